using Nydus.Actors.Fuse.Abi;
using Nydus.Actors.Interop;

namespace Nydus.Actors.Fuse.FileSystem;

/// <summary>
/// What a FUSE session serves: the RAFS image and the passthrough directory both implement this.
/// Methods run on the session's worker threads, concurrently, so implementations are thread-safe.
/// Every method answers an <see cref="Errno"/> (Success or the errno the caller's syscall should see);
/// an exception is a bug: the session logs it once and answers EIO.
/// Default implementations let a read-only file system implement only what it needs: modifying operations
/// answer EROFS when <see cref="IsReadOnly"/>, ENOSYS otherwise; stateless open/release/flush succeed.
/// Node id 1 (<see cref="FuseProtocol.RootId"/>) is the root directory.
/// </summary>
public interface IFuseFileSystem
{
    /// <summary>Whether modifying operations are refused with EROFS.</summary>
    bool IsReadOnly => true;

    /// <summary>Whether <see cref="ReadDirPlus"/> is implemented (the session asks the kernel for READDIRPLUS only then).</summary>
    bool SupportsReadDirPlus => false;

    /// <summary>
    /// Whether this file system keeps nothing per open file or directory and answers OPEN and OPENDIR with ENOSYS,
    /// so the kernel may stop sending them and their RELEASEs (FUSE's zero-message open; the kernel then keeps file
    /// pages and directory listings cached across opens). Such a reply holds for the whole connection, so a session
    /// shared with file systems that need handles must not pass it on (the VFS decides).
    /// </summary>
    bool SupportsZeroMessageOpen => false;

    /// <summary>
    /// Whether names never appear or vanish while this file system is mounted (a read-only image): a name it does not
    /// have may then be cached by the kernel as absent (a negative entry) for as long as the VFS can invalidate it.
    /// </summary>
    bool IsImmutable => false;

    /// <summary>Called once per connection when INIT has been answered.</summary>
    void Init(FuseConnectionInfo connection)
    {
    }

    /// <summary>Called on DESTROY (the kernel tears the connection down).</summary>
    void Destroy()
    {
    }

    Errno Lookup(in FuseContext context, ulong parent, ReadOnlySpan<byte> name, out FuseEntry entry)
    {
        entry = default;
        return Errno.ENOSYS;
    }

    /// <summary>The kernel dropped <paramref name="lookupCount"/> references to the node (FORGET and BATCH_FORGET; no reply).</summary>
    void Forget(ulong nodeId, ulong lookupCount)
    {
    }

    /// <param name="handle">The open handle when the kernel asked through one (fstat), otherwise null.</param>
    Errno GetAttr(in FuseContext context, ulong nodeId, ulong? handle, out FuseAttr attr, out TimeSpan timeout)
    {
        attr = default;
        timeout = default;
        return Errno.ENOSYS;
    }

    Errno SetAttr(in FuseContext context, ulong nodeId, in FuseSetAttrIn changes, out FuseAttr attr, out TimeSpan timeout)
    {
        attr = default;
        timeout = default;
        return IsReadOnly ? Errno.EROFS : Errno.ENOSYS;
    }

    /// <param name="target">Receives the link target (no terminator).</param>
    /// <param name="length">Bytes written to <paramref name="target"/>.</param>
    Errno ReadLink(in FuseContext context, ulong nodeId, Span<byte> target, out int length)
    {
        length = 0;
        return Errno.ENOSYS;
    }

    Errno Mknod(in FuseContext context, ulong parent, ReadOnlySpan<byte> name, uint mode, uint rdev, uint umask, out FuseEntry entry)
    {
        entry = default;
        return IsReadOnly ? Errno.EROFS : Errno.ENOSYS;
    }

    Errno Mkdir(in FuseContext context, ulong parent, ReadOnlySpan<byte> name, uint mode, uint umask, out FuseEntry entry)
    {
        entry = default;
        return IsReadOnly ? Errno.EROFS : Errno.ENOSYS;
    }

    Errno Unlink(in FuseContext context, ulong parent, ReadOnlySpan<byte> name) =>
        IsReadOnly ? Errno.EROFS : Errno.ENOSYS;

    Errno Rmdir(in FuseContext context, ulong parent, ReadOnlySpan<byte> name) =>
        IsReadOnly ? Errno.EROFS : Errno.ENOSYS;

    Errno Symlink(in FuseContext context, ulong parent, ReadOnlySpan<byte> name, ReadOnlySpan<byte> target, out FuseEntry entry)
    {
        entry = default;
        return IsReadOnly ? Errno.EROFS : Errno.ENOSYS;
    }

    /// <summary>RENAME and RENAME2.</summary>
    /// <param name="flags">renameat2 flags (RENAME_NOREPLACE = 1, RENAME_EXCHANGE = 2, RENAME_WHITEOUT = 4); 0 for RENAME.</param>
    Errno Rename(in FuseContext context, ulong parent, ReadOnlySpan<byte> name, ulong newParent, ReadOnlySpan<byte> newName, uint flags) =>
        IsReadOnly ? Errno.EROFS : Errno.ENOSYS;

    Errno Link(in FuseContext context, ulong nodeId, ulong newParent, ReadOnlySpan<byte> newName, out FuseEntry entry)
    {
        entry = default;
        return IsReadOnly ? Errno.EROFS : Errno.ENOSYS;
    }

    /// <param name="flags">open(2) flags of the caller.</param>
    Errno Open(in FuseContext context, ulong nodeId, int flags, out FuseOpenResult result)
    {
        result = default;
        return IsReadOnly && (flags & Libc.O_ACCMODE) != Libc.O_RDONLY ? Errno.EROFS : Errno.Success;
    }

    /// <summary>Fills <paramref name="buffer"/> (a slice of the reply buffer) from <paramref name="offset"/>.</summary>
    /// <param name="bytesRead">Bytes placed in <paramref name="buffer"/>; fewer than its length means end of file.</param>
    Errno Read(in FuseContext context, ulong nodeId, ulong handle, long offset, Span<byte> buffer, out int bytesRead)
    {
        bytesRead = 0;
        return Errno.ENOSYS;
    }

    Errno Write(in FuseContext context, ulong nodeId, ulong handle, long offset, ReadOnlySpan<byte> data, uint writeFlags, out int bytesWritten)
    {
        bytesWritten = 0;
        return IsReadOnly ? Errno.EROFS : Errno.ENOSYS;
    }

    Errno StatFs(in FuseContext context, ulong nodeId, out FuseKstatfs stat)
    {
        stat = default;
        stat.NameLength = 255;
        stat.BlockSize = 4096;
        stat.FragmentSize = 4096;
        return Errno.Success;
    }

    Errno Release(in FuseContext context, ulong nodeId, ulong handle, int flags) => Errno.Success;

    Errno Flush(in FuseContext context, ulong nodeId, ulong handle, ulong lockOwner) => Errno.Success;

    Errno Fsync(in FuseContext context, ulong nodeId, ulong handle, bool dataOnly) => Errno.Success;

    Errno SetXattr(in FuseContext context, ulong nodeId, ReadOnlySpan<byte> name, ReadOnlySpan<byte> value, int flags) =>
        IsReadOnly ? Errno.EROFS : Errno.ENOSYS;

    /// <param name="value">Receives the value; empty when the caller only asks for the size.</param>
    /// <param name="size">The value's size (also when <paramref name="value"/> is empty). ERANGE when it does not fit.</param>
    Errno GetXattr(in FuseContext context, ulong nodeId, ReadOnlySpan<byte> name, Span<byte> value, out int size)
    {
        size = 0;
        return Errno.ENOSYS;
    }

    /// <param name="list">Receives the NUL-separated names; empty when the caller only asks for the size.</param>
    Errno ListXattr(in FuseContext context, ulong nodeId, Span<byte> list, out int size)
    {
        size = 0;
        return Errno.ENOSYS;
    }

    Errno RemoveXattr(in FuseContext context, ulong nodeId, ReadOnlySpan<byte> name) =>
        IsReadOnly ? Errno.EROFS : Errno.ENOSYS;

    Errno OpenDir(in FuseContext context, ulong nodeId, int flags, out FuseOpenResult result)
    {
        result = default;
        return Errno.Success;
    }

    /// <summary>Lists entries from <paramref name="offset"/> (0 = start, otherwise a nextOffset given earlier).</summary>
    Errno ReadDir(in FuseContext context, ulong nodeId, ulong handle, long offset, ref FuseDirectoryWriter writer) =>
        Errno.ENOSYS;

    /// <summary>As <see cref="ReadDir"/> with attributes; add "." and ".." with TryAdd, other entries with TryAddPlus.</summary>
    Errno ReadDirPlus(in FuseContext context, ulong nodeId, ulong handle, long offset, ref FuseDirectoryWriter writer) =>
        Errno.ENOSYS;

    Errno ReleaseDir(in FuseContext context, ulong nodeId, ulong handle) => Errno.Success;

    Errno FsyncDir(in FuseContext context, ulong nodeId, ulong handle, bool dataOnly) => Errno.Success;

    /// <param name="mask">access(2) mode: F_OK = 0, R_OK = 4, W_OK = 2, X_OK = 1.</param>
    Errno Access(in FuseContext context, ulong nodeId, int mask) =>
        IsReadOnly && (mask & 2) != 0 ? Errno.EROFS : Errno.Success;

    Errno Create(in FuseContext context, ulong parent, ReadOnlySpan<byte> name, uint mode, uint umask, int flags, out FuseEntry entry, out FuseOpenResult result)
    {
        entry = default;
        result = default;
        return IsReadOnly ? Errno.EROFS : Errno.ENOSYS;
    }

    Errno Fallocate(in FuseContext context, ulong nodeId, ulong handle, int mode, long offset, long length) =>
        IsReadOnly ? Errno.EROFS : Errno.ENOSYS;

    Errno Lseek(in FuseContext context, ulong nodeId, ulong handle, long offset, int whence, out long result)
    {
        result = 0;
        return Errno.ENOSYS;
    }

    Errno CopyFileRange(in FuseContext context, ulong nodeIn, ulong handleIn, long offsetIn, ulong nodeOut, ulong handleOut, long offsetOut, long length, ulong flags, out long bytesCopied)
    {
        bytesCopied = 0;
        return IsReadOnly ? Errno.EROFS : Errno.ENOSYS;
    }
}
