using Microsoft.Win32.SafeHandles;
using Nydus.Actors.Fuse.Abi;
using Nydus.Actors.Fuse.FileSystem;
using Nydus.Actors.Interop;

namespace Nydus.Actors.Passthrough;

// Operations that change the tree or an inode: SETATTR, MKNOD, MKDIR, SYMLINK, UNLINK, RMDIR, RENAME, LINK.
public sealed partial class PassthroughFileSystem
{
    public Errno SetAttr(in FuseContext context, ulong nodeId, in FuseSetAttrIn changes, out FuseAttr attr, out TimeSpan timeout)
    {
        attr = default;
        timeout = CacheTimeout;
        if (!TryGetWritableInode(nodeId, out PassthroughInode inode, out Errno errno))
        {
            return errno;
        }

        SafeFileHandle? file = null;
        if ((changes.Valid & FuseSetAttrValid.Handle) != 0)
        {
            _files.TryGetValue(changes.Fh, out file);
        }

        Span<byte> path = stackalloc byte[PathBytes.ProcFdBufferSize];
        ReadOnlySpan<byte> procPath = PathBytes.ProcFd(inode.Descriptor, path);
        bool isSymlink = inode.FileType == FileModes.S_IFLNK;

        if ((changes.Valid & FuseSetAttrValid.Mode) != 0)
        {
            // Linux has no mode bits on symlinks; chmod through /proc would change the target.
            if (isSymlink)
            {
                return Errno.EOPNOTSUPP;
            }

            int result = file is not null ? Libc.FChmod(file, changes.Mode & 0xFFF) : Libc.Chmod(procPath, changes.Mode & 0xFFF);
            if (result != 0)
            {
                return Libc.LastErrno;
            }
        }

        if ((changes.Valid & (FuseSetAttrValid.Uid | FuseSetAttrValid.Gid)) != 0)
        {
            uint uid = (changes.Valid & FuseSetAttrValid.Uid) != 0 ? changes.Uid : uint.MaxValue;
            uint gid = (changes.Valid & FuseSetAttrValid.Gid) != 0 ? changes.Gid : uint.MaxValue;
            if (Libc.FChownAt(inode.PathHandle, PathBytes.Empty, uid, gid, Libc.AT_EMPTY_PATH | Libc.AT_SYMLINK_NOFOLLOW) != 0)
            {
                return Libc.LastErrno;
            }
        }

        if ((changes.Valid & FuseSetAttrValid.Size) != 0)
        {
            int result = file is not null ? Libc.FTruncate(file, (long)changes.Size) : Libc.Truncate(procPath, (long)changes.Size);
            if (result != 0)
            {
                return Libc.LastErrno;
            }
        }

        const FuseSetAttrValid timeBits = FuseSetAttrValid.Atime | FuseSetAttrValid.Mtime | FuseSetAttrValid.AtimeNow | FuseSetAttrValid.MtimeNow;
        if ((changes.Valid & timeBits) != 0)
        {
            Span<Libc.Timespec> times = stackalloc Libc.Timespec[2];
            times[0] = TimeChange(changes.Valid, FuseSetAttrValid.Atime, FuseSetAttrValid.AtimeNow, changes.Atime, changes.AtimeNsec);
            times[1] = TimeChange(changes.Valid, FuseSetAttrValid.Mtime, FuseSetAttrValid.MtimeNow, changes.Mtime, changes.MtimeNsec);
            // A symlink's own times: utimensat on its O_PATH handle with an empty path (AT_EMPTY_PATH, Linux
            // 5.8+), never through /proc/self/fd/N, whose resolution would follow the link to its target.
            int result = file is not null ? Libc.FUtimens(file, times)
                : isSymlink ? Libc.UtimensAt(inode.PathHandle, PathBytes.Empty, times, Libc.AT_EMPTY_PATH | Libc.AT_SYMLINK_NOFOLLOW)
                : Libc.UtimensAt(Libc.AT_FDCWD, procPath, times, 0);
            if (result != 0)
            {
                return Libc.LastErrno;
            }
        }

        errno = StatInode(inode, out Statx stat);
        if (errno == Errno.Success)
        {
            FillAttr(in stat, out attr);
        }

        return errno;
    }

    public Errno Mknod(in FuseContext context, ulong parent, ReadOnlySpan<byte> name, uint mode, uint rdev, uint umask, out FuseEntry entry)
    {
        entry = default;
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

        using (CallerCredentials.Assume(in context))
        {
            ulong device = GlibcMakeDevice(FileModes.DeviceMajor(rdev), FileModes.DeviceMinor(rdev));
            if (Libc.MknodAt(directory.PathHandle, terminated, mode, device) != 0)
            {
                return Libc.LastErrno;
            }

            errno = LookupChild(directory, name, out entry);
            if (errno == Errno.Success)
            {
                RestoreMode(entry.NodeId, mode);
            }

            return errno;
        }
    }

    public Errno Mkdir(in FuseContext context, ulong parent, ReadOnlySpan<byte> name, uint mode, uint umask, out FuseEntry entry)
    {
        entry = default;
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

        using (CallerCredentials.Assume(in context))
        {
            if (Libc.MkdirAt(directory.PathHandle, terminated, mode & 0xFFF) != 0)
            {
                return Libc.LastErrno;
            }

            errno = LookupChild(directory, name, out entry);
            if (errno == Errno.Success)
            {
                RestoreMode(entry.NodeId, mode);
            }

            return errno;
        }
    }

    public Errno Symlink(in FuseContext context, ulong parent, ReadOnlySpan<byte> name, ReadOnlySpan<byte> target, out FuseEntry entry)
    {
        entry = default;
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

        Span<byte> targetBuffer = target.Length < 4096 ? stackalloc byte[target.Length + 1] : new byte[target.Length + 1];
        ReadOnlySpan<byte> terminatedTarget = PathBytes.Terminate(target, targetBuffer);
        using (CallerCredentials.Assume(in context))
        {
            if (Libc.SymlinkAt(terminatedTarget, directory.PathHandle, terminated) != 0)
            {
                return Libc.LastErrno;
            }

            return LookupChild(directory, name, out entry);
        }
    }

    public Errno Unlink(in FuseContext context, ulong parent, ReadOnlySpan<byte> name) => Remove(parent, name, 0);

    public Errno Rmdir(in FuseContext context, ulong parent, ReadOnlySpan<byte> name) => Remove(parent, name, Libc.AT_REMOVEDIR);

    public Errno Rename(in FuseContext context, ulong parent, ReadOnlySpan<byte> name, ulong newParent, ReadOnlySpan<byte> newName, uint flags)
    {
        if (!Writable)
        {
            return Errno.EROFS;
        }

        if (!TryGetInode(parent, out PassthroughInode from, out Errno errno) || !TryGetInode(newParent, out PassthroughInode to, out errno))
        {
            return errno;
        }

        Span<byte> nameBuffer = stackalloc byte[PathBytes.NameBufferSize];
        Span<byte> newNameBuffer = stackalloc byte[PathBytes.NameBufferSize];
        ReadOnlySpan<byte> oldTerminated = PathBytes.Terminate(name, nameBuffer);
        ReadOnlySpan<byte> newTerminated = PathBytes.Terminate(newName, newNameBuffer);
        if (oldTerminated.IsEmpty || newTerminated.IsEmpty)
        {
            return Errno.ENAMETOOLONG;
        }

        return Libc.RenameAt2(from.PathHandle, oldTerminated, to.PathHandle, newTerminated, flags) == 0 ? Errno.Success : Libc.LastErrno;
    }

    public Errno Link(in FuseContext context, ulong nodeId, ulong newParent, ReadOnlySpan<byte> newName, out FuseEntry entry)
    {
        entry = default;
        if (!Writable)
        {
            return Errno.EROFS;
        }

        if (!TryGetInode(nodeId, out PassthroughInode inode, out Errno errno) || !TryGetInode(newParent, out PassthroughInode directory, out errno))
        {
            return errno;
        }

        Span<byte> nameBuffer = stackalloc byte[PathBytes.NameBufferSize];
        ReadOnlySpan<byte> terminated = PathBytes.Terminate(newName, nameBuffer);
        if (terminated.IsEmpty)
        {
            return Errno.ENAMETOOLONG;
        }

        // Following /proc/self/fd/N links the inode the O_PATH descriptor holds (a symlink stays a symlink)
        // without needing CAP_DAC_READ_SEARCH as linkat(fd, "", AT_EMPTY_PATH) would.
        Span<byte> path = stackalloc byte[PathBytes.ProcFdBufferSize];
        if (Libc.LinkAt(Libc.AT_FDCWD, PathBytes.ProcFd(inode.Descriptor, path), directory.PathHandle, terminated, Libc.AT_SYMLINK_FOLLOW) != 0)
        {
            return Libc.LastErrno;
        }

        return LookupChild(directory, newName, out entry);
    }

    private Errno Remove(ulong parent, ReadOnlySpan<byte> name, int flags)
    {
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

        return Libc.UnlinkAt(directory.PathHandle, terminated, flags) == 0 ? Errno.Success : Libc.LastErrno;
    }

    /// <summary>Re-applies permission bits the process umask stripped from a new file or directory.</summary>
    private void RestoreMode(ulong nodeId, uint mode)
    {
        uint permissions = mode & 0xFFF;
        if ((permissions & _processUmask) == 0 || !_inodes.TryGet(nodeId, out PassthroughInode inode) || inode.FileType == FileModes.S_IFLNK)
        {
            return;
        }

        Span<byte> path = stackalloc byte[PathBytes.ProcFdBufferSize];
        Libc.Chmod(PathBytes.ProcFd(inode.Descriptor, path), permissions);
    }

    private static Libc.Timespec TimeChange(FuseSetAttrValid valid, FuseSetAttrValid set, FuseSetAttrValid now, ulong seconds, uint nanoseconds)
    {
        if ((valid & now) != 0)
        {
            return new Libc.Timespec { Nanoseconds = Libc.UTIME_NOW };
        }

        return (valid & set) != 0
            ? new Libc.Timespec { Seconds = (long)seconds, Nanoseconds = nanoseconds }
            : new Libc.Timespec { Nanoseconds = Libc.UTIME_OMIT };
    }

    /// <summary>glibc's makedev: the 64-bit dev_t mknodat expects.</summary>
    private static ulong GlibcMakeDevice(uint major, uint minor) =>
        ((ulong)(major & 0xfff) << 8) | ((ulong)(major & ~0xfffu) << 32) | (minor & 0xffu) | ((ulong)(minor & ~0xffu) << 12);
}
