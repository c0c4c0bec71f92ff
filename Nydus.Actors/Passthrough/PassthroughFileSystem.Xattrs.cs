using Nydus.Actors.Fuse.FileSystem;
using Nydus.Actors.Interop;

namespace Nydus.Actors.Passthrough;

// Extended attributes through /proc/self/fd/N (the f*xattr calls refuse O_PATH descriptors). For a symlink the
// magic link resolves to the symlink inode the O_PATH|O_NOFOLLOW handle holds and is not followed further, so
// its own trusted.*/security.* attributes are reached (user.* on a link: the kernel's EPERM).
public sealed partial class PassthroughFileSystem
{
    public Errno SetXattr(in FuseContext context, ulong nodeId, ReadOnlySpan<byte> name, ReadOnlySpan<byte> value, int flags)
    {
        if (!Writable)
        {
            return Errno.EROFS;
        }

        if (!TryXattrPath(nodeId, out int descriptor, out Errno errno))
        {
            return errno;
        }

        Span<byte> path = stackalloc byte[PathBytes.ProcFdBufferSize];
        Span<byte> nameBuffer = stackalloc byte[PathBytes.NameBufferSize];
        ReadOnlySpan<byte> terminated = PathBytes.Terminate(name, nameBuffer);
        if (terminated.IsEmpty)
        {
            return Errno.ERANGE;
        }

        return Libc.SetXattr(PathBytes.ProcFd(descriptor, path), terminated, value, (nuint)value.Length, flags) == 0
            ? Errno.Success
            : Libc.LastErrno;
    }

    public Errno GetXattr(in FuseContext context, ulong nodeId, ReadOnlySpan<byte> name, Span<byte> value, out int size)
    {
        size = 0;
        if (!TryXattrPath(nodeId, out int descriptor, out Errno errno))
        {
            return errno;
        }

        Span<byte> path = stackalloc byte[PathBytes.ProcFdBufferSize];
        Span<byte> nameBuffer = stackalloc byte[PathBytes.NameBufferSize];
        ReadOnlySpan<byte> terminated = PathBytes.Terminate(name, nameBuffer);
        if (terminated.IsEmpty)
        {
            return Errno.ERANGE;
        }

        nint result = Libc.GetXattr(PathBytes.ProcFd(descriptor, path), terminated, value, (nuint)value.Length);
        if (result < 0)
        {
            return Libc.LastErrno;
        }

        size = (int)result;
        return Errno.Success;
    }

    public Errno ListXattr(in FuseContext context, ulong nodeId, Span<byte> list, out int size)
    {
        size = 0;
        if (!TryXattrPath(nodeId, out int descriptor, out Errno errno))
        {
            return errno;
        }

        Span<byte> path = stackalloc byte[PathBytes.ProcFdBufferSize];
        nint result = Libc.ListXattr(PathBytes.ProcFd(descriptor, path), list, (nuint)list.Length);
        if (result < 0)
        {
            return Libc.LastErrno;
        }

        size = (int)result;
        return Errno.Success;
    }

    public Errno RemoveXattr(in FuseContext context, ulong nodeId, ReadOnlySpan<byte> name)
    {
        if (!Writable)
        {
            return Errno.EROFS;
        }

        if (!TryXattrPath(nodeId, out int descriptor, out Errno errno))
        {
            return errno;
        }

        Span<byte> path = stackalloc byte[PathBytes.ProcFdBufferSize];
        Span<byte> nameBuffer = stackalloc byte[PathBytes.NameBufferSize];
        ReadOnlySpan<byte> terminated = PathBytes.Terminate(name, nameBuffer);
        if (terminated.IsEmpty)
        {
            return Errno.ERANGE;
        }

        return Libc.RemoveXattr(PathBytes.ProcFd(descriptor, path), terminated) == 0 ? Errno.Success : Libc.LastErrno;
    }

    private bool TryXattrPath(ulong nodeId, out int descriptor, out Errno errno)
    {
        descriptor = -1;
        if (!TryGetInode(nodeId, out PassthroughInode inode, out errno))
        {
            return false;
        }

        descriptor = inode.Descriptor;
        return true;
    }
}
