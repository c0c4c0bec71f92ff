using Microsoft.Win32.SafeHandles;
using Nydus.Actors.Fuse.FileSystem;
using Nydus.Actors.Interop;

namespace Nydus.Actors.Passthrough;

// Open files: OPEN, CREATE, READ, WRITE, FLUSH, FSYNC, RELEASE, FALLOCATE, LSEEK, COPY_FILE_RANGE.
public sealed partial class PassthroughFileSystem
{
    public Errno Open(in FuseContext context, ulong nodeId, int flags, out FuseOpenResult result)
    {
        result = default;
        if (!Writable && (flags & ReadOnlyOpenFlagsMask) != Libc.O_RDONLY)
        {
            return Errno.EROFS;
        }

        if (!TryGetInode(nodeId, out PassthroughInode inode, out Errno errno))
        {
            return errno;
        }

        // O_NOFOLLOW would refuse the /proc magic link itself; creation flags were handled by the kernel.
        int hostFlags = AdjustForWriteback((flags & ~(Libc.O_NOFOLLOW | Libc.O_CREAT | Libc.O_EXCL | Libc.O_NOCTTY)) | Libc.O_CLOEXEC);
        Span<byte> path = stackalloc byte[PathBytes.ProcFdBufferSize];
        SafeFileHandle? file = Libc.Own(Libc.Open(PathBytes.ProcFd(inode.Descriptor, path), hostFlags, 0));
        if (file is null)
        {
            return Libc.LastErrno;
        }

        result.Handle = NextHandle();
        _files[result.Handle] = file;
        AttachBacking(inode, file, ref result);
        SkipFlushIfNothingToDo(inode, ref result);
        return Errno.Success;
    }

    public Errno Create(in FuseContext context, ulong parent, ReadOnlySpan<byte> name, uint mode, uint umask, int flags, out FuseEntry entry, out FuseOpenResult result)
    {
        entry = default;
        result = default;
        if (!TryGetWritableInode(parent, out PassthroughInode directory, out Errno errno))
        {
            return errno;
        }

        Span<byte> nameBuffer = stackalloc byte[PathBytes.NameBufferSize];
        ReadOnlySpan<byte> terminated = PathBytes.Terminate(name, nameBuffer);
        if (terminated.IsEmpty)
        {
            return Errno.ENAMETOOLONG;
        }

        SafeFileHandle? file;
        using (CallerCredentials.Assume(in context))
        {
            int hostFlags = AdjustForWriteback((flags | Libc.O_CREAT | Libc.O_CLOEXEC) & ~Libc.O_NOFOLLOW);
            file = Libc.Own(Libc.OpenAt(directory.PathHandle, terminated, hostFlags, mode & 0xFFF));
            if (file is null)
            {
                return Libc.LastErrno;
            }

            if ((mode & 0xFFF & _processUmask) != 0)
            {
                Libc.FChmod(file, mode & 0xFFF);
            }
        }

        errno = LookupChild(directory, name, out entry);
        if (errno != Errno.Success)
        {
            file.Dispose();
            return errno;
        }

        result.Handle = NextHandle();
        _files[result.Handle] = file;
        if (TryGetInode(entry.NodeId, out PassthroughInode created, out _))
        {
            AttachBacking(created, file, ref result);
            SkipFlushIfNothingToDo(created, ref result);
        }

        return Errno.Success;
    }

    public Errno Read(in FuseContext context, ulong nodeId, ulong handle, long offset, Span<byte> buffer, out int bytesRead)
    {
        bytesRead = 0;
        Interlocked.Increment(ref _readRequests);
        if (!_files.TryGetValue(handle, out SafeFileHandle? file))
        {
            return Errno.EBADF;
        }

        // Regular files return short only at end of file; keep reading after a short pipe/device read.
        while (bytesRead < buffer.Length)
        {
            nint read = Libc.PReadInto(file, buffer[bytesRead..], offset + bytesRead);
            if (read < 0)
            {
                Errno errno = Libc.LastErrno;
                if (errno == Errno.EINTR)
                {
                    continue;
                }

                return bytesRead > 0 ? Errno.Success : errno;
            }

            if (read == 0)
            {
                break;
            }

            bytesRead += (int)read;
        }

        return Errno.Success;
    }

    public Errno Write(in FuseContext context, ulong nodeId, ulong handle, long offset, ReadOnlySpan<byte> data, uint writeFlags, out int bytesWritten)
    {
        bytesWritten = 0;
        Interlocked.Increment(ref _writeRequests);
        if (!Writable)
        {
            return Errno.EROFS;
        }

        if (!_files.TryGetValue(handle, out SafeFileHandle? file))
        {
            return Errno.EBADF;
        }

        nint written = Libc.PWriteFrom(file, data, offset);
        if (written < 0)
        {
            return Libc.LastErrno;
        }

        bytesWritten = (int)written;
        return Errno.Success;
    }

    public Errno Flush(in FuseContext context, ulong nodeId, ulong handle, ulong lockOwner)
    {
        Interlocked.Increment(ref _flushRequests);
        if (!_files.TryGetValue(handle, out SafeFileHandle? file))
        {
            return Errno.EBADF;
        }

        // close() of a duplicate gives the host file system its per-close hook (as every close(2) of the
        // caller's descriptor reaches us as FLUSH), without giving up the handle.
        int copy = Libc.Fcntl(file, Libc.F_DUPFD_CLOEXEC, 0);
        if (copy < 0)
        {
            return Libc.LastErrno;
        }

        return Libc.Close(copy) == 0 ? Errno.Success : Libc.LastErrno;
    }

    public Errno Fsync(in FuseContext context, ulong nodeId, ulong handle, bool dataOnly)
    {
        if (!_files.TryGetValue(handle, out SafeFileHandle? file))
        {
            return Errno.EBADF;
        }

        int result = dataOnly ? Libc.FDataSync(file) : Libc.FSync(file);
        return result == 0 ? Errno.Success : Libc.LastErrno;
    }

    public Errno Release(in FuseContext context, ulong nodeId, ulong handle, int flags)
    {
        DetachBacking(handle);
        if (_files.TryRemove(handle, out SafeFileHandle? file))
        {
            file.Dispose();
        }

        return Errno.Success;
    }

    public Errno Fallocate(in FuseContext context, ulong nodeId, ulong handle, int mode, long offset, long length)
    {
        if (!Writable)
        {
            return Errno.EROFS;
        }

        if (!_files.TryGetValue(handle, out SafeFileHandle? file))
        {
            return Errno.EBADF;
        }

        return Libc.FAllocate(file, mode, offset, length) == 0 ? Errno.Success : Libc.LastErrno;
    }

    public Errno Lseek(in FuseContext context, ulong nodeId, ulong handle, long offset, int whence, out long result)
    {
        result = 0;
        if (!_files.TryGetValue(handle, out SafeFileHandle? file))
        {
            return Errno.EBADF;
        }

        result = Libc.LSeek(file, offset, whence);
        return result < 0 ? Libc.LastErrno : Errno.Success;
    }

    public Errno CopyFileRange(in FuseContext context, ulong nodeIn, ulong handleIn, long offsetIn, ulong nodeOut, ulong handleOut, long offsetOut, long length, ulong flags, out long bytesCopied)
    {
        bytesCopied = 0;
        if (!Writable)
        {
            return Errno.EROFS;
        }

        if (!_files.TryGetValue(handleIn, out SafeFileHandle? input) || !_files.TryGetValue(handleOut, out SafeFileHandle? output))
        {
            return Errno.EBADF;
        }

        nint copied = Libc.CopyFileRange(input, ref offsetIn, output, ref offsetOut, (nuint)length, (uint)flags);
        if (copied < 0)
        {
            return Libc.LastErrno;
        }

        bytesCopied = copied;
        return Errno.Success;
    }

    /// <summary>
    /// With the writeback cache the kernel reads pages of files opened write-only (to fill partial pages)
    /// and computes append offsets itself, so the host file must be readable and not O_APPEND.
    /// </summary>
    private int AdjustForWriteback(int flags)
    {
        if (!_writebackCache)
        {
            return flags;
        }

        if ((flags & Libc.O_ACCMODE) == Libc.O_WRONLY)
        {
            flags = (flags & ~Libc.O_ACCMODE) | Libc.O_RDWR;
        }

        return flags & ~Libc.O_APPEND;
    }
}
