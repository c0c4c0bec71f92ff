using System.Collections.Concurrent;
using Microsoft.Win32.SafeHandles;
using Nydus.Actors.Fuse.Abi;
using Nydus.Actors.Fuse.FileSystem;
using Nydus.Actors.Interop;

namespace Nydus.Actors.Passthrough;

/// <summary>
/// Shares a host directory through FUSE (nydusd --shared-dir, read-only unless --writable). Each known
/// inode is held by an O_PATH descriptor and reopened through /proc/self/fd/N, so nodes survive renames
/// on the host and no path strings are rebuilt per request. Inode numbers are the host's; node ids are
/// this server's. When running as root, creating operations run with the caller's fsuid/fsgid.
/// Failures answer the errno the host syscall gave.
/// </summary>
public sealed partial class PassthroughFileSystem : IFuseFileSystem, IDisposable
{
    private const int ReadOnlyOpenFlagsMask = Libc.O_ACCMODE | Libc.O_TRUNC | Libc.O_APPEND | Libc.O_CREAT;

    private readonly PassthroughInodeTable _inodes;
    private readonly ConcurrentDictionary<ulong, SafeFileHandle> _files = new();
    private readonly ConcurrentDictionary<ulong, PassthroughDirectory> _directories = new();
    private readonly uint _processUmask;
    private long _nextHandle;
    private volatile bool _writebackCache;
    private uint _servedDeviceMinor;
    private long _flushRequests;
    private readonly ulong _rootDevice;
    private readonly bool _rootHasNoFlush;

    /// <summary>
    /// statfs f_type of local file systems whose files have no flush operation (ext2/3/4, XFS, Btrfs, tmpfs): FLUSH's
    /// close of a duplicate does nothing on them, so files of the shared directory's own file system are opened with
    /// FOPEN_NOFLUSH and a close(2) costs no request. Any other file system (NFS, FUSE, overlay...) keeps FLUSH.
    /// </summary>
    private static readonly HashSet<long> LocalFileSystemsWithoutFlush = [0xEF53, 0x58465342, 0x9123683E, 0x01021994];

    /// <param name="root">The host directory to share.</param>
    /// <param name="writable">False answers every modifying request with EROFS.</param>
    /// <param name="cacheTimeout">How long the kernel may cache entries and attributes (default 1 s).</param>
    /// <param name="kernelPassthrough">Back open files by their host files in the kernel when INIT granted
    /// FUSE_PASSTHROUGH (see PassthroughFileSystem.Backing.cs).</param>
    public PassthroughFileSystem(string root, bool writable, TimeSpan? cacheTimeout = null, bool kernelPassthrough = true)
    {
        Root = Path.GetFullPath(root);
        Writable = writable;
        KernelPassthrough = kernelPassthrough;
        CacheTimeout = cacheTimeout ?? TimeSpan.FromSeconds(1);

        SafeFileHandle rootHandle = Libc.Own(Libc.Open(PathBytes.FromString(Root), Libc.O_PATH | Libc.O_DIRECTORY | Libc.O_CLOEXEC, 0))
            ?? throw new DirectoryNotFoundException($"cannot open shared directory {Root}: {Libc.LastErrno}");
        if (Libc.StatxAt(rootHandle, PathBytes.Empty, Libc.AT_EMPTY_PATH, Libc.STATX_BASIC_STATS, out Statx stat) != 0)
        {
            Errno errno = Libc.LastErrno;
            rootHandle.Dispose();
            throw new IOException($"cannot stat shared directory {Root}: {errno}");
        }

        _inodes = new PassthroughInodeTable(rootHandle, stat.Device, stat.Inode);
        _rootDevice = stat.Device;
        _rootHasNoFlush = Libc.FStatFs(rootHandle, out Libc.StatFs host) == 0 && LocalFileSystemsWithoutFlush.Contains(host.Type);

        // mkdirat/mknodat/openat apply this process's umask on top of the caller's (already applied by
        // the kernel); remember it to restore the caller's exact mode afterwards.
        _processUmask = Libc.Umask(0x12) /* 022 octal: a harmless placeholder while reading the old mask */;
        Libc.Umask(_processUmask);
    }

    public string Root { get; }

    public bool Writable { get; }

    public TimeSpan CacheTimeout { get; }

    public bool IsReadOnly => !Writable;

    public bool SupportsReadDirPlus => true;

    /// <summary>Nodes currently known to the kernel, root included (for tests and metrics).</summary>
    public int KnownNodes => _inodes.Count;

    public int OpenFiles => _files.Count;

    /// <summary>FLUSH requests served (for tests: files opened with FOPEN_NOFLUSH send none).</summary>
    public long FlushRequests => Interlocked.Read(ref _flushRequests);

    /// <summary>Sets FOPEN_NOFLUSH for a file on the shared directory's own device when that file system has no flush
    /// (the kernel ignores it beside the writeback cache, which needs FLUSH to write back before close returns).</summary>
    private void SkipFlushIfNothingToDo(PassthroughInode inode, ref FuseOpenResult result)
    {
        if (_rootHasNoFlush && !_writebackCache && inode.Device == _rootDevice) result.Flags |= FuseOpenFlags.NoFlush;
    }

    public void Init(FuseConnectionInfo connection)
    {
        _writebackCache = (connection.Flags & FuseInitFlags.WritebackCache) != 0;
        _servedDeviceMinor = connection.ServedDeviceMinor;
        InitBacking(connection);
    }

    public void Forget(ulong nodeId, ulong lookupCount) => _inodes.Forget(nodeId, lookupCount);

    public void Destroy()
    {
        ForgetBacking();
        foreach (ulong handle in _files.Keys)
        {
            if (_files.TryRemove(handle, out SafeFileHandle? file))
            {
                file.Dispose();
            }
        }

        foreach (ulong handle in _directories.Keys)
        {
            if (_directories.TryRemove(handle, out PassthroughDirectory? directory))
            {
                directory.Dispose();
            }
        }
    }

    public void Dispose()
    {
        Destroy();
        _inodes.Dispose();
    }

    private ulong NextHandle() => (ulong)Interlocked.Increment(ref _nextHandle);

    /// <summary>Unknown or forgotten node ids answer ESTALE, as for a file handle that no longer resolves.</summary>
    private bool TryGetInode(ulong nodeId, out PassthroughInode inode, out Errno errno)
    {
        if (_inodes.TryGet(nodeId, out inode))
        {
            errno = Errno.Success;
            return true;
        }

        errno = Errno.ESTALE;
        return false;
    }

    /// <summary>As <see cref="TryGetInode"/> for a change: a read-only share answers EROFS before anything else.</summary>
    private bool TryGetWritableInode(ulong nodeId, out PassthroughInode inode, out Errno errno)
    {
        if (!Writable)
        {
            inode = null!;
            errno = Errno.EROFS;
            return false;
        }

        return TryGetInode(nodeId, out inode, out errno);
    }

    private static Errno StatInode(PassthroughInode inode, out Statx stat) =>
        Libc.StatxAt(inode.PathHandle, PathBytes.Empty, Libc.AT_EMPTY_PATH | Libc.AT_SYMLINK_NOFOLLOW, Libc.STATX_BASIC_STATS, out stat) == 0
            ? Errno.Success
            : Libc.LastErrno;

    private static void FillAttr(in Statx stat, out FuseAttr attr)
    {
        attr = new FuseAttr
        {
            Ino = stat.Inode,
            Size = stat.Size,
            Blocks = stat.Blocks,
            Atime = (ulong)stat.AccessTime.Seconds,
            AtimeNsec = stat.AccessTime.Nanoseconds,
            Mtime = (ulong)stat.ModifyTime.Seconds,
            MtimeNsec = stat.ModifyTime.Nanoseconds,
            Ctime = (ulong)stat.ChangeTime.Seconds,
            CtimeNsec = stat.ChangeTime.Nanoseconds,
            Mode = stat.Mode,
            Nlink = stat.LinkCount,
            Uid = stat.Uid,
            Gid = stat.Gid,
            Rdev = FileModes.EncodeDevice(stat.RdevMajor, stat.RdevMinor),
            BlkSize = stat.BlockSize,
        };
    }

    /// <summary>Resolves <paramref name="name"/> in <paramref name="parent"/> and takes a lookup reference.</summary>
    private Errno LookupChild(PassthroughInode parent, ReadOnlySpan<byte> name, out FuseEntry entry)
    {
        entry = default;
        Span<byte> nameBuffer = stackalloc byte[PathBytes.NameBufferSize];
        ReadOnlySpan<byte> terminated = PathBytes.Terminate(name, nameBuffer);
        if (terminated.IsEmpty)
        {
            return Errno.ENAMETOOLONG;
        }

        if (parent.NodeId == FuseProtocol.RootId && name.SequenceEqual(".."u8))
        {
            // Never let an NFS-style ".." lookup climb out of the shared directory.
            terminated = ".\0"u8;
        }

        SafeFileHandle? handle = Libc.Own(Libc.OpenAt(parent.PathHandle, terminated, Libc.O_PATH | Libc.O_NOFOLLOW | Libc.O_CLOEXEC, 0));
        if (handle is null)
        {
            return Libc.LastErrno;
        }

        if (Libc.StatxAt(handle, PathBytes.Empty, Libc.AT_EMPTY_PATH | Libc.AT_SYMLINK_NOFOLLOW, Libc.STATX_BASIC_STATS, out Statx stat) != 0)
        {
            Errno errno = Libc.LastErrno;
            handle.Dispose();
            return errno;
        }

        if (stat.DevMajor == 0 && stat.DevMinor == _servedDeviceMinor && _servedDeviceMinor != 0)
        {
            // The name leads into the mount this daemon serves (a bind mount of it inside the shared directory): each
            // directory read of it would be a read of this connection, one level deeper each time, until every worker
            // waits in one. Such a source is refused at mount; this covers the aliases a path check cannot see.
            handle.Dispose();
            return Errno.ELOOP;
        }

        PassthroughInode inode = _inodes.Reference(handle, stat.Device, stat.Inode, stat.FileType);
        entry.NodeId = inode.NodeId;
        entry.EntryTimeout = CacheTimeout;
        entry.AttrTimeout = CacheTimeout;
        FillAttr(in stat, out entry.Attr);
        return Errno.Success;
    }

    public Errno Lookup(in FuseContext context, ulong parent, ReadOnlySpan<byte> name, out FuseEntry entry)
    {
        entry = default;
        return TryGetInode(parent, out PassthroughInode directory, out Errno errno)
            ? LookupChild(directory, name, out entry)
            : errno;
    }

    public Errno GetAttr(in FuseContext context, ulong nodeId, ulong? handle, out FuseAttr attr, out TimeSpan timeout)
    {
        attr = default;
        timeout = CacheTimeout;
        if (!TryGetInode(nodeId, out PassthroughInode inode, out Errno errno))
        {
            return errno;
        }

        errno = StatInode(inode, out Statx stat);
        if (errno == Errno.Success)
        {
            FillAttr(in stat, out attr);
        }

        return errno;
    }

    public Errno StatFs(in FuseContext context, ulong nodeId, out FuseKstatfs stat)
    {
        stat = default;
        if (!TryGetInode(nodeId, out PassthroughInode inode, out Errno errno))
        {
            return errno;
        }

        if (Libc.FStatFs(inode.PathHandle, out Libc.StatFs host) != 0)
        {
            return Libc.LastErrno;
        }

        stat.Blocks = host.Blocks;
        stat.BlocksFree = host.BlocksFree;
        stat.BlocksAvailable = host.BlocksAvailable;
        stat.Files = host.Files;
        stat.FilesFree = host.FilesFree;
        stat.BlockSize = (uint)host.BlockSize;
        stat.NameLength = (uint)host.NameLength;
        stat.FragmentSize = (uint)host.FragmentSize;
        return Errno.Success;
    }

    public Errno ReadLink(in FuseContext context, ulong nodeId, Span<byte> target, out int length)
    {
        length = 0;
        if (!TryGetInode(nodeId, out PassthroughInode inode, out Errno errno))
        {
            return errno;
        }

        nint read = Libc.ReadLinkAt(inode.PathHandle, PathBytes.Empty, target, (nuint)target.Length);
        if (read < 0)
        {
            return Libc.LastErrno;
        }

        length = (int)read;
        return Errno.Success;
    }

    public Errno Access(in FuseContext context, ulong nodeId, int mask)
    {
        if (!TryGetInode(nodeId, out PassthroughInode inode, out Errno errno))
        {
            return errno;
        }

        if (!Writable && (mask & 2) != 0)
        {
            return Errno.EROFS;
        }

        Span<byte> path = stackalloc byte[PathBytes.ProcFdBufferSize];
        using var credentials = CallerCredentials.Assume(in context);
        return Libc.FAccessAt(Libc.AT_FDCWD, PathBytes.ProcFd(inode.Descriptor, path), mask, Libc.AT_EACCESS) == 0
            ? Errno.Success
            : Libc.LastErrno;
    }
}
