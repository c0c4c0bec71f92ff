using System.Buffers.Binary;
using Microsoft.Win32.SafeHandles;
using Nydus.Actors.Fuse.FileSystem;
using Nydus.Actors.Interop;

namespace Nydus.Actors.Passthrough;

// Directories: OPENDIR, READDIR, READDIRPLUS, RELEASEDIR, FSYNCDIR.
public sealed partial class PassthroughFileSystem
{
    // struct linux_dirent64: u64 d_ino, s64 d_off, u16 d_reclen, u8 d_type, char d_name[].
    private const int DirentNameOffset = 19;
    private const int SeekSet = 0;

    public Errno OpenDir(in FuseContext context, ulong nodeId, int flags, out FuseOpenResult result)
    {
        result = default;
        if (!TryGetInode(nodeId, out PassthroughInode inode, out Errno errno))
        {
            return errno;
        }

        Span<byte> path = stackalloc byte[PathBytes.ProcFdBufferSize];
        SafeFileHandle? handle = Libc.Own(Libc.Open(PathBytes.ProcFd(inode.Descriptor, path), Libc.O_RDONLY | Libc.O_DIRECTORY | Libc.O_CLOEXEC, 0));
        if (handle is null)
        {
            return Libc.LastErrno;
        }

        result.Handle = NextHandle();
        _directories[result.Handle] = new PassthroughDirectory(handle);
        return Errno.Success;
    }

    public Errno ReadDir(in FuseContext context, ulong nodeId, ulong handle, long offset, ref FuseDirectoryWriter writer) =>
        List(nodeId, handle, offset, ref writer);

    public Errno ReadDirPlus(in FuseContext context, ulong nodeId, ulong handle, long offset, ref FuseDirectoryWriter writer) =>
        List(nodeId, handle, offset, ref writer);

    public Errno ReleaseDir(in FuseContext context, ulong nodeId, ulong handle)
    {
        if (_directories.TryRemove(handle, out PassthroughDirectory? directory))
        {
            directory.Dispose();
        }

        return Errno.Success;
    }

    public Errno FsyncDir(in FuseContext context, ulong nodeId, ulong handle, bool dataOnly)
    {
        if (!_directories.TryGetValue(handle, out PassthroughDirectory? directory))
        {
            return Errno.EBADF;
        }

        int result = dataOnly ? Libc.FDataSync(directory.Handle) : Libc.FSync(directory.Handle);
        return result == 0 ? Errno.Success : Libc.LastErrno;
    }

    private Errno List(ulong nodeId, ulong handle, long offset, ref FuseDirectoryWriter writer)
    {
        if (!_directories.TryGetValue(handle, out PassthroughDirectory? directory))
        {
            return Errno.EBADF;
        }

        if (!TryGetInode(nodeId, out PassthroughInode parent, out Errno errno))
        {
            return errno;
        }

        lock (directory.Gate)
        {
            if (offset != directory.Offset)
            {
                // Not where the last listing stopped (rewinddir, or a seek): position the host directory.
                if (Libc.LSeek(directory.Handle, offset, SeekSet) < 0)
                {
                    return Libc.LastErrno;
                }

                directory.Start = directory.End = 0;
                directory.Offset = offset;
            }

            while (true)
            {
                if (directory.Start >= directory.End)
                {
                    nint read = Libc.GetDents64(directory.Handle, directory.Buffer, (nuint)directory.Buffer.Length);
                    if (read < 0)
                    {
                        return Libc.LastErrno;
                    }

                    if (read == 0)
                    {
                        return Errno.Success;
                    }

                    directory.Start = 0;
                    directory.End = (int)read;
                }

                ReadOnlySpan<byte> record = directory.Buffer.AsSpan(directory.Start, directory.End - directory.Start);
                ulong inode = BinaryPrimitives.ReadUInt64LittleEndian(record);
                long nextOffset = BinaryPrimitives.ReadInt64LittleEndian(record[8..]);
                int recordLength = BinaryPrimitives.ReadUInt16LittleEndian(record[16..]);
                uint type = record[18];
                ReadOnlySpan<byte> name = record[DirentNameOffset..recordLength];
                name = name[..name.IndexOf((byte)0)];

                if (!writer.HasRoomFor(name.Length))
                {
                    return Errno.Success;
                }

                bool isDot = name.SequenceEqual("."u8) || name.SequenceEqual(".."u8);
                if (writer.IsPlus && !isDot)
                {
                    Errno lookup = LookupChild(parent, name, out FuseEntry entry);
                    if (lookup == Errno.Success)
                    {
                        writer.TryAddPlus(in entry, name, nextOffset);
                    }

                    // An entry removed since getdents64 saw it is skipped, as readdir(3) may skip it.
                }
                else
                {
                    writer.TryAdd(inode, name, type, nextOffset);
                }

                directory.Start += recordLength;
                directory.Offset = nextOffset;
            }
        }
    }
}
