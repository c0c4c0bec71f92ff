using System.Diagnostics;
using System.Text;
using Nydus.Actors.Fuse.Abi;
using Nydus.Actors.Fuse.FileSystem;
using Nydus.Actors.Fuse.Session;
using Nydus.Actors.Interop;

namespace Nydus.Actors.Vfs;

/// <summary>
/// Serves several filesystem instances through one FUSE session, as upstream's fuse-backend-rs VFS does: a pseudo
/// directory tree at the root whose leaves are the virtual mountpoints. Node ids are partitioned
/// <c>(instance index &lt;&lt; 56) | inode</c>, pseudo nodes in index 0; the instance at "/" is served as the root.
/// </summary>
/// <remarks>
/// The hot path is one array read and one interlocked lease per request: no locks, no allocation. A lease keeps an
/// instance alive while a request runs on it or a handle it returned is open, so umount and remount never close an
/// instance under a reader: the old instance is disposed when its last lease goes. Remount puts the new instance in
/// a fresh index, so names looked up again reach it while open files keep reading the old one.
/// </remarks>
public sealed class VirtualFileSystem : IFuseFileSystem, IDisposable
{
    public const int IndexShift = 56;
    public const ulong InodeMask = (1UL << IndexShift) - 1;
    private const int MaxIndex = 255;
    private const ulong RootId = 1;

    /// <summary>How long the kernel may cache pseudo directories when nobody tells it of changes (no notifier).</summary>
    private static readonly TimeSpan UnnotifiedTimeout = TimeSpan.FromSeconds(1);

    /// <summary>With a notifier every change of the pseudo tree is announced, so the kernel may keep it as images keep theirs.</summary>
    private static readonly TimeSpan NotifiedTimeout = TimeSpan.FromHours(1);

    private readonly Slot?[] _slots = new Slot?[MaxIndex + 1];
    private readonly object _gate = new();
    private readonly Dictionary<ulong, PseudoNode> _pseudo = new();
    private readonly PseudoNode _root;
    private int _cursor;
    private volatile Slot? _rootSlot;
    private FuseNotifier? _notifier;
    private FuseConnectionInfo? _connection;

    /// <summary>Live instances that need OPEN and its handle (a passthrough directory); under the gate.</summary>
    private int _handleInstances;

    /// <summary>
    /// The kernel was answered ENOSYS to an OPEN or OPENDIR, so it stopped sending them on this connection for good
    /// (zero-message open): from then on no instance that needs handles can be served. Under the gate.
    /// </summary>
    private bool _zeroMessageOpen;

    public VirtualFileSystem()
    {
        _root = new PseudoNode(RootId, "", null);
        _pseudo[RootId] = _root;
    }

    /// <summary>The kernel mountpoint this VFS is served at (null when there is none, e.g. virtio-fs or a test): mounts
    /// of a passthrough source that contains it or lies under it are refused (<c>MountCommands</c>).</summary>
    public string? KernelMountpoint { get; set; }

    /// <summary>Where cache invalidations go once the session runs (optional: without it the kernel's caches time out).</summary>
    public FuseNotifier? Notifier { get => Volatile.Read(ref _notifier); set => Volatile.Write(ref _notifier, value); }

    /// <summary>How long the kernel may remember a name an image does not have (as long as the images' own entries).</summary>
    private static readonly TimeSpan ImageNegativeTimeout = TimeSpan.FromHours(1);

    private TimeSpan PseudoTimeout => Notifier is null ? UnnotifiedTimeout : NotifiedTimeout;

    /// <summary>
    /// For a successor taking over a connection: its predecessor may have told the kernel that opens need no request
    /// (a handed-over table holds images only: sendfd refuses passthrough), so instances that need handles are refused.
    /// </summary>
    public void AssumeZeroMessageOpen()
    {
        lock (_gate) _zeroMessageOpen = true;
    }

    /// <summary>Whether the kernel was told that opens need no request on this connection (see <see cref="Open"/>).</summary>
    public bool ZeroMessageOpen
    {
        get
        {
            lock (_gate) return _zeroMessageOpen;
        }
    }

    public bool IsReadOnly => false;

    /// <summary>Instances that list with attributes get READDIRPLUS routed; the others answer it as READDIR.</summary>
    public bool SupportsReadDirPlus => true;

    /// <summary>The mounted instances by mountpoint.</summary>
    public IReadOnlyDictionary<string, IFuseFileSystem> Mounts
    {
        get
        {
            lock (_gate)
            {
                var result = new SortedDictionary<string, IFuseFileSystem>(StringComparer.Ordinal);
                foreach (var slot in _slots)
                    if (slot is { Retired: false }) result[slot.Mountpoint] = slot.FileSystem;
                return result;
            }
        }
    }

    /// <summary>The counters of the instance at <paramref name="mountpoint"/> (kept across remounts), or null.</summary>
    public FsIoStats? StatsOf(string mountpoint)
    {
        lock (_gate)
            return FindLive(Normalize(mountpoint))?.Stats;
    }

    /// <summary>The index of the instance at <paramref name="mountpoint"/> (its node ids' top byte), or -1.</summary>
    public int IndexOf(string mountpoint)
    {
        lock (_gate)
            return FindLive(Normalize(mountpoint))?.Index ?? -1;
    }

    /// <summary>Mounts <paramref name="fileSystem"/> at <paramref name="mountpoint"/>; the VFS owns it from then on.</summary>
    /// <param name="owner">What to dispose when the instance closes (its image, backend, cache), instead of the
    /// filesystem itself.</param>
    /// <param name="index">The instance index to use (a successor restoring its predecessor's table must give each
    /// instance the index it had, so the kernel's node ids still reach it); 0 takes the next free one.</param>
    /// <returns>The instance index (the top byte of its node ids).</returns>
    /// <exception cref="InvalidOperationException">The mountpoint is in use, the index is taken, or every index is.</exception>
    public int Mount(string mountpoint, IFuseFileSystem fileSystem, IDisposable? owner = null, int index = 0)
    {
        string path = Normalize(mountpoint);
        Slot added;
        lock (_gate)
        {
            if (FindLive(path) is not null)
                throw new InvalidOperationException($"mountpoint {path} is already in use");
            RefuseIfNeedsHandles(path, fileSystem);
            if (path == "/" && _root.Children.Count > 0)
                throw new InvalidOperationException($"mountpoint / lies above the mounts below it, which it would hide");
            // Below the root's instance, a new top-level pseudo directory must not hide one of the instance's names
            // (pseudo directories win at the root). An existing one was checked when it was made.
            var top = path.Split('/', StringSplitOptions.RemoveEmptyEntries).FirstOrDefault();
            if (top is not null && _rootSlot is { } root && !_root.Children.ContainsKey(top) && HasName(root.FileSystem, top))
                throw new InvalidOperationException($"mountpoint {path} would hide '{top}' of the instance at /");
            PseudoNode? node = null;
            if (path != "/")
            {
                node = _root;
                var prefix = "";
                foreach (var part in path.Split('/', StringSplitOptions.RemoveEmptyEntries))
                {
                    prefix += "/" + part;
                    if (node.Mounted is not null)
                        throw new InvalidOperationException($"mountpoint {path} lies inside the mount at {node.Mounted.Mountpoint}");
                    if (!node.Children.TryGetValue(part, out var child))
                    {
                        child = new PseudoNode(PseudoIdOf(prefix), part, node);
                        node.Children[part] = child;
                        _pseudo[child.Id] = child;
                    }
                    node = child;
                }
                if (node.Children.Count > 0)
                    throw new InvalidOperationException($"mountpoint {path} has mounts below it");
            }
            var slot = new Slot(index == 0 ? TakeIndex() : ClaimIndex(index), path, fileSystem, node) { Owner = owner };
            if (_connection is not null) fileSystem.Init(_connection);
            _slots[slot.Index] = slot;
            if (node is null) _rootSlot = slot;
            else node.Mounted = slot;
            if (!fileSystem.SupportsZeroMessageOpen) _handleInstances++;
            index = slot.Index;
            added = slot;
        }
        Invalidate(path, replaced: null, successor: added);
        return index;
    }

    /// <summary>Replaces the instance at <paramref name="mountpoint"/>; the old one closes when its last reader goes.</summary>
    /// <returns>The new instance's index.</returns>
    public int Remount(string mountpoint, IFuseFileSystem fileSystem, IDisposable? owner = null)
    {
        string path = Normalize(mountpoint);
        Slot old, successor;
        int index;
        lock (_gate)
        {
            old = FindLive(path) ?? throw new KeyNotFoundException($"nothing is mounted at {path}");
            RefuseIfNeedsHandles(path, fileSystem);
            if (path == "/")
            {
                // A new root image must not bring names that the pseudo directories of the other mounts would hide.
                if (_connection is not null) fileSystem.Init(_connection);
                foreach (var name in _root.Children.Keys)
                    if (HasName(fileSystem, name))
                        throw new InvalidOperationException($"the new image at / has '{name}', which the mount at /{name} would hide");
            }
            var slot = new Slot(TakeIndex(), path, fileSystem, old.Node) { Owner = owner, Stats = old.Stats };
            if (_connection is not null && path != "/") fileSystem.Init(_connection);
            _slots[slot.Index] = slot;
            if (old.Node is null) _rootSlot = slot;
            else old.Node.Mounted = slot;
            old.Retired = true;
            if (!fileSystem.SupportsZeroMessageOpen) _handleInstances++;
            if (!old.FileSystem.SupportsZeroMessageOpen) _handleInstances--;
            index = slot.Index;
            successor = slot;
        }
        Invalidate(path, replaced: old, successor: successor);
        old.Release();
        return index;
    }

    /// <summary>Removes the instance at <paramref name="mountpoint"/>; it closes when its last reader goes.</summary>
    public void Umount(string mountpoint)
    {
        string path = Normalize(mountpoint);
        Slot old;
        lock (_gate)
        {
            old = FindLive(path) ?? throw new KeyNotFoundException($"nothing is mounted at {path}");
            old.Retired = true;
            if (!old.FileSystem.SupportsZeroMessageOpen) _handleInstances--;
            if (old.Node is null) _rootSlot = null;
            else
            {
                old.Node.Mounted = null;
                // Prune the pseudo directories nothing is mounted below any more.
                for (var node = old.Node; node.Parent is not null && node.Mounted is null && node.Children.Count == 0; node = node.Parent)
                {
                    node.Parent.Children.Remove(node.Name);
                    _pseudo.Remove(node.Id);
                }
            }
        }
        Invalidate(path, replaced: old, successor: null);
        old.Release();
    }

    /// <summary>Refuses an instance that needs OPEN once the kernel stopped sending it on this connection. Under the gate.</summary>
    private void RefuseIfNeedsHandles(string path, IFuseFileSystem fileSystem)
    {
        if (_zeroMessageOpen && !fileSystem.SupportsZeroMessageOpen)
            throw new InvalidOperationException($"{path}: this FUSE connection serves read-only images without OPEN requests "
                + "(the kernel was told so at the first open, for the connection's lifetime), and this filesystem needs them; "
                + "serve it from a daemon of its own, or mount it before any image file is opened");
    }

    /// <summary>True when <paramref name="fileSystem"/>'s root has an entry <paramref name="name"/> (a lookup, forgotten again).</summary>
    private static bool HasName(IFuseFileSystem fileSystem, string name)
    {
        var context = new FuseContext(FuseOpcode.Lookup, 0, RootId, 0, 0, 0);
        if (fileSystem.Lookup(context, RootId, Encoding.UTF8.GetBytes(name), out var entry) != Errno.Success) return false;
        if (entry.NodeId != 0) fileSystem.Forget(entry.NodeId, 1);
        return true;
    }

    private Slot? FindLive(string path)
    {
        foreach (var slot in _slots)
            if (slot is { Retired: false } && slot.Mountpoint == path) return slot;
        return null;
    }

    private int ClaimIndex(int index)
    {
        if (index is < 1 or > MaxIndex)
            throw new ArgumentOutOfRangeException(nameof(index), $"instance index {index} is outside 1..{MaxIndex}");
        if (_slots[index] is { Disposed: false })
            throw new InvalidOperationException($"instance index {index} is in use by {_slots[index]!.Mountpoint}");
        _cursor = Math.Max(_cursor, index);
        return index;
    }

    private int TakeIndex()
    {
        for (int i = 0; i < MaxIndex; i++)
        {
            int index = (_cursor + i) % MaxIndex + 1;
            if (_slots[index] is null || _slots[index]!.Disposed)
            {
                _cursor = index;
                return index;
            }
        }
        throw new InvalidOperationException($"all {MaxIndex} instance slots are in use");
    }

    /// <summary>
    /// Tells the kernel to forget what it cached of a changed mountpoint: its name in its parent (which drops the whole
    /// cached subtree below it), the listings and attributes of the pseudo directories above it, and the first pseudo
    /// directory an umount pruned. The instance at "/" is FUSE's node 1 itself, which no name invalidation reaches: the
    /// names its replaced instance and its successor have in the root are dropped one by one. Sent outside the gate: a notification waits
    /// for the kernel's directory lock, which a request being served (and maybe waiting for the gate) may hold.
    /// </summary>
    /// <param name="replaced">The instance that left the mountpoint (still leased by the caller), or null.</param>
    /// <param name="successor">The instance that now serves the mountpoint, or null (umount).</param>
    private void Invalidate(string path, Slot? replaced, Slot? successor)
    {
        if (Notifier is not { } notifier) return;
        var inodes = new List<ulong>();
        var entries = new List<(ulong Parent, string Name)>();
        var parts = path.Split('/', StringSplitOptions.RemoveEmptyEntries);
        lock (_gate)
        {
            var node = _root;
            inodes.Add(node.Id);
            int depth = 0;
            for (; depth < parts.Length - 1 && node.Children.TryGetValue(parts[depth], out var child); depth++)
            {
                node = child;
                inodes.Add(node.Id);
            }
            // The leaf in its parent, or the highest pruned directory in the deepest one left.
            if (parts.Length > 0) entries.Add((node.Id, parts[depth]));
            if (parts.Length == 0)
            {
                // The names of both images: the old one's may be cached as present, the new one's as absent (negative
                // entries the old image answered).
                var names = new HashSet<string>();
                if (replaced is not null) names.UnionWith(RootNames(replaced.FileSystem));
                if (successor is not null) names.UnionWith(RootNames(successor.FileSystem));
                foreach (var name in names)
                    if (!_root.Children.ContainsKey(name)) entries.Add((RootId, name));
            }
        }
        // The top component of a deeper mountpoint (a pseudo directory now) may be cached as absent from the image at
        // "/": expired only, which drops a negative entry and merely revalidates a live one (a full invalidation would
        // detach whatever is mounted below it).
        if (parts.Length > 1) _ = notifier.InvalidateEntry(RootId, Encoding.UTF8.GetBytes(parts[0]), expireOnly: true);
        foreach (var (parent, name) in entries) _ = notifier.InvalidateEntry(parent, Encoding.UTF8.GetBytes(name));
        foreach (var inode in inodes) _ = notifier.InvalidateInode(inode);
    }

    /// <summary>The names in <paramref name="fileSystem"/>'s root directory (without "." and "..").</summary>
    private static List<string> RootNames(IFuseFileSystem fileSystem)
    {
        var names = new List<string>();
        var context = new FuseContext(FuseOpcode.ReadDir, 0, RootId, 0, 0, 0);
        var opened = fileSystem.OpenDir(context, RootId, 0, out var handle);
        if (opened is not (Errno.Success or Errno.ENOSYS)) return names;
        var buffer = new byte[64 * 1024];
        try
        {
            long offset = 0;
            while (true)
            {
                var writer = new FuseDirectoryWriter(buffer, plus: false);
                if (fileSystem.ReadDir(context, RootId, handle.Handle, offset, ref writer) != Errno.Success || writer.BytesWritten == 0) break;
                // fuse_dirent: ino u64, off u64, namelen u32, type u32, name, padded to 8 bytes.
                for (int at = 0; at + 24 <= writer.BytesWritten;)
                {
                    offset = BitConverter.ToInt64(buffer, at + 8);
                    int length = BitConverter.ToInt32(buffer, at + 16);
                    var name = Encoding.UTF8.GetString(buffer, at + 24, length);
                    if (name is not ("." or "..")) names.Add(name);
                    at += (24 + length + 7) & ~7;
                }
            }
        }
        finally
        {
            if (opened == Errno.Success) fileSystem.ReleaseDir(context, RootId, handle.Handle);
        }
        return names;
    }

    private static string Normalize(string mountpoint)
    {
        if (string.IsNullOrEmpty(mountpoint) || mountpoint[0] != '/')
            throw new ArgumentException($"mountpoint '{mountpoint}' must be an absolute path", nameof(mountpoint));
        var parts = mountpoint.Split('/', StringSplitOptions.RemoveEmptyEntries);
        if (parts.Any(p => p is "." or ".."))
            throw new ArgumentException($"mountpoint '{mountpoint}' must not contain '.' or '..'", nameof(mountpoint));
        return "/" + string.Join('/', parts);
    }

    /// <summary>Remembers what INIT negotiated and passes it to every instance, present and future.</summary>
    public void Init(FuseConnectionInfo connection)
    {
        lock (_gate)
        {
            _connection = connection;
            foreach (var slot in _slots)
                if (slot is { Retired: false }) slot.FileSystem.Init(connection);
        }
    }

    // ---- routing ----

    /// <summary>Resolves an outer node id to a leased instance and its inner inode; false for pseudo nodes.</summary>
    private bool TryRoute(ulong nodeId, out Slot? slot, out ulong inner)
    {
        if (nodeId == RootId)
        {
            slot = _rootSlot;
            inner = RootId;
            if (slot is null) return false;
            if (!slot.TryAcquire())
            {
                slot = null;
                return false;
            }
            return true;
        }
        int index = (int)(nodeId >> IndexShift);
        inner = nodeId & InodeMask;
        if (index == 0)
        {
            slot = null;
            return false;
        }
        slot = Volatile.Read(ref _slots[index]);
        if (slot is null || !slot.TryAcquire()) slot = Slot.Stale;
        return true;
    }

    private static ulong Outer(Slot slot, ulong inner) =>
        inner == RootId && slot.Node is null ? RootId : ((ulong)slot.Index << IndexShift) | inner;

    private static void Translate(Slot slot, ref FuseEntry entry)
    {
        if (entry.NodeId == 0) return; // negative entry
        entry.NodeId = Outer(slot, entry.NodeId);
        entry.Attr.Ino = entry.NodeId;
    }

    private static FuseContext Inner(in FuseContext context, ulong inner) =>
        new(context.Opcode, context.Unique, inner, context.Uid, context.Gid, context.Pid);

    public Errno Lookup(in FuseContext context, ulong parent, ReadOnlySpan<byte> name, out FuseEntry entry)
    {
        long started = Stopwatch.GetTimestamp();
        entry = default;
        if (parent == RootId || parent >> IndexShift == 0)
        {
            Slot? target = null;
            PseudoNode? dir = null;
            lock (_gate)
            {
                if (_pseudo.TryGetValue(parent, out var node) && node.Children.TryGetValue(Encoding.UTF8.GetString(name), out var child))
                {
                    if (child.Mounted is { } mounted && mounted.TryAcquire()) target = mounted;
                    else if (child.Mounted is null) dir = child;
                }
            }
            if (target is not null)
            {
                try
                {
                    var rc = target.FileSystem.GetAttr(Inner(context, RootId), RootId, null, out entry.Attr, out entry.AttrTimeout);
                    if (rc != Errno.Success) return rc;
                    entry.NodeId = ((ulong)target.Index << IndexShift) | RootId;
                    entry.Attr.Ino = entry.NodeId;
                    entry.EntryTimeout = PseudoTimeout;
                    return Errno.Success;
                }
                finally { target.Release(); }
            }
            if (dir is not null)
            {
                entry.NodeId = dir.Id;
                entry.Attr = PseudoAttr(dir.Id);
                entry.EntryTimeout = entry.AttrTimeout = PseudoTimeout;
                return Errno.Success;
            }
            if (parent != RootId) return Errno.ENOENT;
        }
        if (!TryRoute(parent, out var slot, out var ino)) return Errno.ENOENT;
        if (slot == Slot.Stale) return Errno.ESTALE;
        try
        {
            var rc = slot!.Stats.Count(FsIoStats.Lookup, started, slot.FileSystem.Lookup(Inner(context, ino), ino, name, out entry), ino);
            if (rc == Errno.Success) Translate(slot, ref entry);
            else if (rc == Errno.ENOENT && slot.FileSystem.IsImmutable && Notifier is not null)
            {
                // A negative entry (node id 0 with a timeout): the kernel answers the next lookup of this absent name
                // itself. Every mount change drops such names (Invalidate), so a name the next image has appears at once.
                entry = default;
                entry.EntryTimeout = ImageNegativeTimeout;
                return Errno.Success;
            }
            return rc;
        }
        finally { slot!.Release(); }
    }

    public void Forget(ulong nodeId, ulong lookupCount)
    {
        if (!TryRoute(nodeId, out var slot, out var ino) || slot == Slot.Stale) return;
        long started = Stopwatch.GetTimestamp();
        try { slot!.FileSystem.Forget(ino, lookupCount); slot.Stats.Count(FsIoStats.Forget, started, Errno.Success, ino); }
        finally { slot!.Release(); }
    }

    private static FuseAttr PseudoAttr(ulong id)
    {
        long now = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        return new FuseAttr
        {
            Ino = id,
            Mode = 0x4000 | 0b111_101_101, // S_IFDIR | 0755
            Nlink = 2,
            BlkSize = 4096,
            Atime = (ulong)now,
            Mtime = (ulong)now,
            Ctime = (ulong)now,
        };
    }

    public Errno GetAttr(in FuseContext context, ulong nodeId, ulong? handle, out FuseAttr attr, out TimeSpan timeout)
    {
        long started = Stopwatch.GetTimestamp();
        if (!TryRoute(nodeId, out var slot, out var ino))
        {
            timeout = PseudoTimeout;
            lock (_gate)
            {
                attr = _pseudo.ContainsKey(nodeId) ? PseudoAttr(nodeId) : default;
                return attr.Ino == 0 ? Errno.ENOENT : Errno.Success;
            }
        }
        if (slot == Slot.Stale)
        {
            attr = default;
            timeout = default;
            return Errno.ESTALE;
        }
        try
        {
            var rc = slot!.Stats.Count(FsIoStats.Getattr, started, slot.FileSystem.GetAttr(Inner(context, ino), ino, handle, out attr, out timeout), ino);
            attr.Ino = nodeId;
            return rc;
        }
        finally { slot!.Release(); }
    }

    public Errno SetAttr(in FuseContext context, ulong nodeId, in FuseSetAttrIn changes, out FuseAttr attr, out TimeSpan timeout)
    {
        attr = default;
        timeout = default;
        if (!TryRoute(nodeId, out var slot, out var ino)) return Errno.EROFS;
        if (slot == Slot.Stale) return Errno.ESTALE;
        try
        {
            var rc = slot!.FileSystem.SetAttr(Inner(context, ino), ino, changes, out attr, out timeout);
            attr.Ino = nodeId;
            return rc;
        }
        finally { slot!.Release(); }
    }

    public Errno ReadLink(in FuseContext context, ulong nodeId, Span<byte> target, out int length)
    {
        long started = Stopwatch.GetTimestamp();
        length = 0;
        if (!TryRoute(nodeId, out var slot, out var ino)) return Errno.EINVAL;
        if (slot == Slot.Stale) return Errno.ESTALE;
        try { return slot!.Stats.Count(FsIoStats.Readlink, started, slot.FileSystem.ReadLink(Inner(context, ino), ino, target, out length), ino); }
        finally { slot!.Release(); }
    }

    public Errno Mknod(in FuseContext context, ulong parent, ReadOnlySpan<byte> name, uint mode, uint rdev, uint umask, out FuseEntry entry)
    {
        entry = default;
        if (!TryRoute(parent, out var slot, out var ino)) return Errno.EROFS;
        if (slot == Slot.Stale) return Errno.ESTALE;
        try
        {
            var rc = slot!.FileSystem.Mknod(Inner(context, ino), ino, name, mode, rdev, umask, out entry);
            if (rc == Errno.Success) Translate(slot, ref entry);
            return rc;
        }
        finally { slot!.Release(); }
    }

    public Errno Mkdir(in FuseContext context, ulong parent, ReadOnlySpan<byte> name, uint mode, uint umask, out FuseEntry entry)
    {
        entry = default;
        if (!TryRoute(parent, out var slot, out var ino)) return Errno.EROFS;
        if (slot == Slot.Stale) return Errno.ESTALE;
        try
        {
            var rc = slot!.FileSystem.Mkdir(Inner(context, ino), ino, name, mode, umask, out entry);
            if (rc == Errno.Success) Translate(slot, ref entry);
            return rc;
        }
        finally { slot!.Release(); }
    }

    public Errno Unlink(in FuseContext context, ulong parent, ReadOnlySpan<byte> name)
    {
        if (!TryRoute(parent, out var slot, out var ino)) return Errno.EROFS;
        if (slot == Slot.Stale) return Errno.ESTALE;
        try { return slot!.FileSystem.Unlink(Inner(context, ino), ino, name); }
        finally { slot!.Release(); }
    }

    public Errno Rmdir(in FuseContext context, ulong parent, ReadOnlySpan<byte> name)
    {
        if (!TryRoute(parent, out var slot, out var ino)) return Errno.EROFS;
        if (slot == Slot.Stale) return Errno.ESTALE;
        try { return slot!.FileSystem.Rmdir(Inner(context, ino), ino, name); }
        finally { slot!.Release(); }
    }

    public Errno Symlink(in FuseContext context, ulong parent, ReadOnlySpan<byte> name, ReadOnlySpan<byte> target, out FuseEntry entry)
    {
        entry = default;
        if (!TryRoute(parent, out var slot, out var ino)) return Errno.EROFS;
        if (slot == Slot.Stale) return Errno.ESTALE;
        try
        {
            var rc = slot!.FileSystem.Symlink(Inner(context, ino), ino, name, target, out entry);
            if (rc == Errno.Success) Translate(slot, ref entry);
            return rc;
        }
        finally { slot!.Release(); }
    }

    public Errno Rename(in FuseContext context, ulong parent, ReadOnlySpan<byte> name, ulong newParent, ReadOnlySpan<byte> newName, uint flags)
    {
        if (parent >> IndexShift != newParent >> IndexShift && parent != RootId && newParent != RootId) return Errno.EXDEV;
        if (!TryRoute(parent, out var slot, out var ino)) return Errno.EROFS;
        if (slot == Slot.Stale) return Errno.ESTALE;
        try
        {
            if (!TryRoute(newParent, out var other, out var newIno)) return Errno.EXDEV;
            if (other != Slot.Stale) other!.Release();
            if (!ReferenceEquals(other, slot)) return Errno.EXDEV;
            return slot!.FileSystem.Rename(Inner(context, ino), ino, name, newIno, newName, flags);
        }
        finally { slot!.Release(); }
    }

    public Errno Link(in FuseContext context, ulong nodeId, ulong newParent, ReadOnlySpan<byte> newName, out FuseEntry entry)
    {
        entry = default;
        if (!TryRoute(nodeId, out var slot, out var ino)) return Errno.EROFS;
        if (slot == Slot.Stale) return Errno.ESTALE;
        try
        {
            if (!TryRoute(newParent, out var other, out var newIno)) return Errno.EXDEV;
            if (other != Slot.Stale) other!.Release();
            if (!ReferenceEquals(other, slot)) return Errno.EXDEV;
            var rc = slot!.FileSystem.Link(Inner(context, ino), ino, newIno, newName, out entry);
            if (rc == Errno.Success) Translate(slot, ref entry);
            return rc;
        }
        finally { slot!.Release(); }
    }

    public Errno Open(in FuseContext context, ulong nodeId, int flags, out FuseOpenResult result)
    {
        long started = Stopwatch.GetTimestamp();
        result = default;
        if (!TryRoute(nodeId, out var slot, out var ino)) return Errno.EISDIR;
        if (slot == Slot.Stale) return Errno.ESTALE;
        var rc = slot!.Stats.Count(FsIoStats.Open, started, slot.FileSystem.Open(Inner(context, ino), ino, flags, out result), ino);
        if (rc == Errno.ENOSYS) rc = ZeroMessageOpenOr(slot, FuseOpenFlags.KeepCache, ref result);
        // A successful open keeps its lease until RELEASE: the instance outlives a remount while the file is open.
        if (rc != Errno.Success) slot.Release();
        return rc;
    }

    /// <summary>
    /// An instance that needs no handles (an image) answered OPEN or OPENDIR with ENOSYS. Passed on, the kernel stops
    /// sending OPEN (or OPENDIR) and its RELEASE for the whole connection and keeps pages (and listings) cached across
    /// opens; that is only right while no mounted instance needs handles, and it cannot be taken back (later such
    /// mounts are refused). Otherwise the open succeeds here with handle 0 and the flags the kernel would have
    /// assumed, at the cost of the OPEN and RELEASE round trips. Runs once or twice per connection when passed on.
    /// </summary>
    private Errno ZeroMessageOpenOr(Slot slot, FuseOpenFlags cacheFlags, ref FuseOpenResult result)
    {
        if (!slot.FileSystem.SupportsZeroMessageOpen) return Errno.ENOSYS;
        lock (_gate)
        {
            if (_handleInstances == 0)
            {
                _zeroMessageOpen = true;
                return Errno.ENOSYS;
            }
        }
        result = new FuseOpenResult { Handle = 0, Flags = cacheFlags };
        return Errno.Success;
    }

    public Errno Read(in FuseContext context, ulong nodeId, ulong handle, long offset, Span<byte> buffer, out int bytesRead)
    {
        bytesRead = 0;
        if (!TryRoute(nodeId, out var slot, out var ino)) return Errno.EISDIR;
        if (slot == Slot.Stale) return Errno.ESTALE;
        long started = Stopwatch.GetTimestamp();
        try
        {
            var rc = slot!.FileSystem.Read(Inner(context, ino), ino, handle, offset, buffer, out bytesRead);
            return slot.Stats.CountRead(started, rc, bytesRead, ino);
        }
        finally { slot!.Release(); }
    }

    public Errno Write(in FuseContext context, ulong nodeId, ulong handle, long offset, ReadOnlySpan<byte> data, uint writeFlags, out int bytesWritten)
    {
        bytesWritten = 0;
        if (!TryRoute(nodeId, out var slot, out var ino)) return Errno.EISDIR;
        if (slot == Slot.Stale) return Errno.ESTALE;
        try { return slot!.FileSystem.Write(Inner(context, ino), ino, handle, offset, data, writeFlags, out bytesWritten); }
        finally { slot!.Release(); }
    }

    public Errno StatFs(in FuseContext context, ulong nodeId, out FuseKstatfs stat)
    {
        long started = Stopwatch.GetTimestamp();
        if (!TryRoute(nodeId, out var slot, out var ino) || slot == Slot.Stale)
        {
            stat = default;
            stat.NameLength = 255;
            stat.BlockSize = 4096;
            stat.FragmentSize = 4096;
            return Errno.Success;
        }
        try { return slot!.Stats.Count(FsIoStats.Statfs, started, slot.FileSystem.StatFs(Inner(context, ino), ino, out stat), ino); }
        finally { slot!.Release(); }
    }

    public Errno Release(in FuseContext context, ulong nodeId, ulong handle, int flags) =>
        ReleaseHandle(context, nodeId, handle, flags, dir: false);

    public Errno ReleaseDir(in FuseContext context, ulong nodeId, ulong handle) =>
        ReleaseHandle(context, nodeId, handle, 0, dir: true);

    private Errno ReleaseHandle(in FuseContext context, ulong nodeId, ulong handle, int flags, bool dir)
    {
        // The open's lease is still held, so the slot in this index is the one that opened (it cannot be reused).
        int index = nodeId == RootId ? -1 : (int)(nodeId >> IndexShift);
        if (index == 0) return Errno.Success;
        Slot? slot = index < 0 ? _rootSlot : Volatile.Read(ref _slots[index]);
        if (index < 0 && handle is not 0 && _rootSlot is null) return Errno.Success;
        if (slot is null || slot.Disposed) return Errno.Success;
        ulong ino = nodeId & InodeMask;
        long started = Stopwatch.GetTimestamp();
        try
        {
            return slot.Stats.Count(FsIoStats.Release, started, dir ? slot.FileSystem.ReleaseDir(Inner(context, ino), ino, handle)
                : slot.FileSystem.Release(Inner(context, ino), ino, handle, flags), ino);
        }
        finally { slot.Release(); }
    }

    public Errno Flush(in FuseContext context, ulong nodeId, ulong handle, ulong lockOwner)
    {
        if (!TryRoute(nodeId, out var slot, out var ino) || slot == Slot.Stale) return Errno.Success;
        try { return slot!.FileSystem.Flush(Inner(context, ino), ino, handle, lockOwner); }
        finally { slot!.Release(); }
    }

    public Errno Fsync(in FuseContext context, ulong nodeId, ulong handle, bool dataOnly)
    {
        if (!TryRoute(nodeId, out var slot, out var ino) || slot == Slot.Stale) return Errno.Success;
        try { return slot!.FileSystem.Fsync(Inner(context, ino), ino, handle, dataOnly); }
        finally { slot!.Release(); }
    }

    public Errno SetXattr(in FuseContext context, ulong nodeId, ReadOnlySpan<byte> name, ReadOnlySpan<byte> value, int flags)
    {
        if (!TryRoute(nodeId, out var slot, out var ino)) return Errno.EROFS;
        if (slot == Slot.Stale) return Errno.ESTALE;
        try { return slot!.FileSystem.SetXattr(Inner(context, ino), ino, name, value, flags); }
        finally { slot!.Release(); }
    }

    public Errno GetXattr(in FuseContext context, ulong nodeId, ReadOnlySpan<byte> name, Span<byte> value, out int size)
    {
        long started = Stopwatch.GetTimestamp();
        size = 0;
        if (!TryRoute(nodeId, out var slot, out var ino)) return Errno.ENODATA;
        if (slot == Slot.Stale) return Errno.ESTALE;
        try { return slot!.Stats.Count(FsIoStats.Getxattr, started, slot.FileSystem.GetXattr(Inner(context, ino), ino, name, value, out size), ino); }
        finally { slot!.Release(); }
    }

    public Errno ListXattr(in FuseContext context, ulong nodeId, Span<byte> list, out int size)
    {
        long started = Stopwatch.GetTimestamp();
        size = 0;
        if (!TryRoute(nodeId, out var slot, out var ino)) return Errno.Success;
        if (slot == Slot.Stale) return Errno.ESTALE;
        try { return slot!.Stats.Count(FsIoStats.Listxattr, started, slot.FileSystem.ListXattr(Inner(context, ino), ino, list, out size), ino); }
        finally { slot!.Release(); }
    }

    public Errno RemoveXattr(in FuseContext context, ulong nodeId, ReadOnlySpan<byte> name)
    {
        if (!TryRoute(nodeId, out var slot, out var ino)) return Errno.EROFS;
        if (slot == Slot.Stale) return Errno.ESTALE;
        try { return slot!.FileSystem.RemoveXattr(Inner(context, ino), ino, name); }
        finally { slot!.Release(); }
    }

    public Errno OpenDir(in FuseContext context, ulong nodeId, int flags, out FuseOpenResult result)
    {
        long started = Stopwatch.GetTimestamp();
        result = default;
        if (!TryRoute(nodeId, out var slot, out var ino)) return Errno.Success;
        if (slot == Slot.Stale) return Errno.ESTALE;
        var rc = slot!.Stats.Count(FsIoStats.Opendir, started, slot.FileSystem.OpenDir(Inner(context, ino), ino, flags, out result), ino);
        if (rc == Errno.ENOSYS) rc = ZeroMessageOpenOr(slot, FuseOpenFlags.KeepCache | FuseOpenFlags.CacheDir, ref result);
        if (rc != Errno.Success) slot.Release();
        return rc;
    }

    public Errno ReadDir(in FuseContext context, ulong nodeId, ulong handle, long offset, ref FuseDirectoryWriter writer)
    {
        long started = Stopwatch.GetTimestamp();
        if (!TryRoute(nodeId, out var slot, out var ino))
        {
            lock (_gate)
            {
                if (!_pseudo.TryGetValue(nodeId, out var node)) return Errno.ENOENT;
                var names = node.Children.Keys.Order(StringComparer.Ordinal).ToArray();
                for (long i = offset; i < names.Length + 2; i++)
                {
                    (ulong ino2, byte[] name) = i switch
                    {
                        0 => (node.Id, "."u8.ToArray()),
                        1 => (node.Parent?.Id ?? RootId, ".."u8.ToArray()),
                        _ => (node.Children[names[i - 2]].Id, Encoding.UTF8.GetBytes(names[i - 2])),
                    };
                    if (!writer.TryAdd(ino2, name, 4 /* DT_DIR */, i + 1)) break;
                }
                return Errno.Success;
            }
        }
        if (slot == Slot.Stale) return Errno.ESTALE;
        try { return slot!.Stats.Count(FsIoStats.Readdir, started, slot.FileSystem.ReadDir(Inner(context, ino), ino, handle, offset, ref writer), ino); }
        finally { slot!.Release(); }
    }

    /// <summary>
    /// Routed like <see cref="ReadDir"/> when the instance lists with attributes; its node ids get the instance's index
    /// as in <see cref="Lookup"/>. Pseudo directories and instances without READDIRPLUS list plain entries (node id 0:
    /// the kernel looks each up when it needs it).
    /// </summary>
    public Errno ReadDirPlus(in FuseContext context, ulong nodeId, ulong handle, long offset, ref FuseDirectoryWriter writer)
    {
        long started = Stopwatch.GetTimestamp();
        if (!TryRoute(nodeId, out var slot, out var ino) || slot == Slot.Stale || !slot!.FileSystem.SupportsReadDirPlus)
        {
            if (slot is not null && slot != Slot.Stale) slot.Release();
            return ReadDir(context, nodeId, handle, offset, ref writer);
        }
        try
        {
            var rc = slot.Stats.Count(FsIoStats.Readdirplus, started, slot.FileSystem.ReadDirPlus(Inner(context, ino), ino, handle, offset, ref writer), ino);
            // The instance's root is the FUSE root only at "/", and no entry of a listing is a root: every node moves.
            writer.SetNodeIdHighBits(0, (ulong)slot.Index << IndexShift);
            return rc;
        }
        finally { slot.Release(); }
    }

    public Errno FsyncDir(in FuseContext context, ulong nodeId, ulong handle, bool dataOnly) => Errno.Success;

    public Errno Access(in FuseContext context, ulong nodeId, int mask)
    {
        long started = Stopwatch.GetTimestamp();
        if (!TryRoute(nodeId, out var slot, out var ino)) return (mask & 2) != 0 ? Errno.EROFS : Errno.Success;
        if (slot == Slot.Stale) return Errno.ESTALE;
        try { return slot!.Stats.Count(FsIoStats.Access, started, slot.FileSystem.Access(Inner(context, ino), ino, mask), ino); }
        finally { slot!.Release(); }
    }

    public Errno Create(in FuseContext context, ulong parent, ReadOnlySpan<byte> name, uint mode, uint umask, int flags, out FuseEntry entry, out FuseOpenResult result)
    {
        entry = default;
        result = default;
        if (!TryRoute(parent, out var slot, out var ino)) return Errno.EROFS;
        if (slot == Slot.Stale) return Errno.ESTALE;
        var rc = slot!.FileSystem.Create(Inner(context, ino), ino, name, mode, umask, flags, out entry, out result);
        if (rc == Errno.Success) Translate(slot, ref entry); // keeps the lease as Open does
        else slot.Release();
        return rc;
    }

    public Errno Fallocate(in FuseContext context, ulong nodeId, ulong handle, int mode, long offset, long length)
    {
        if (!TryRoute(nodeId, out var slot, out var ino)) return Errno.EROFS;
        if (slot == Slot.Stale) return Errno.ESTALE;
        try { return slot!.FileSystem.Fallocate(Inner(context, ino), ino, handle, mode, offset, length); }
        finally { slot!.Release(); }
    }

    public Errno Lseek(in FuseContext context, ulong nodeId, ulong handle, long offset, int whence, out long result)
    {
        result = 0;
        if (!TryRoute(nodeId, out var slot, out var ino)) return Errno.ENOSYS;
        if (slot == Slot.Stale) return Errno.ESTALE;
        try { return slot!.FileSystem.Lseek(Inner(context, ino), ino, handle, offset, whence, out result); }
        finally { slot!.Release(); }
    }

    /// <summary>
    /// A pseudo directory's node id is a hash of its path (FNV-1a, inside index 0), not a counter: a successor that
    /// takes over the connection mounts the same table in whatever order its journal gives and must still answer the
    /// ids the kernel holds for these directories. A collision (rare) takes the next free id, under the gate.
    /// </summary>
    private ulong PseudoIdOf(string path)
    {
        ulong hash = 14695981039346656037UL;
        foreach (char c in path)
        {
            hash ^= c;
            hash *= 1099511628211UL;
        }
        ulong id = hash & InodeMask;
        while (id <= RootId || _pseudo.ContainsKey(id)) id = (id + 1) & InodeMask;
        return id;
    }

    public void Dispose()
    {
        Slot[] live;
        lock (_gate)
        {
            live = _slots.Where(s => s is { Retired: false }).ToArray()!;
            foreach (var slot in live) slot.Retired = true;
            _rootSlot = null;
        }
        foreach (var slot in live) slot.Release();
    }

    private sealed class PseudoNode(ulong id, string name, PseudoNode? parent)
    {
        public ulong Id { get; } = id;
        public string Name { get; } = name;
        public PseudoNode? Parent { get; } = parent;
        public Dictionary<string, PseudoNode> Children { get; } = new(StringComparer.Ordinal);
        public Slot? Mounted { get; set; }
    }

    /// <summary>One mounted instance and its leases: one for the mount table, one per request in flight and per open handle.</summary>
    private sealed class Slot(int index, string mountpoint, IFuseFileSystem fileSystem, PseudoNode? node)
    {
        /// <summary>Marks a node id whose instance is gone (answered ESTALE).</summary>
        public static readonly Slot Stale = new(0, "", null!, null) { _leases = 0 };

        private int _leases = 1;

        public int Index { get; } = index;
        public string Mountpoint { get; } = mountpoint;
        public IFuseFileSystem FileSystem { get; private set; } = fileSystem;
        public PseudoNode? Node { get; } = node;
        public IDisposable? Owner { get; set; }
        /// <summary>The mountpoint's counters: a remount hands them to the successor slot.</summary>
        public FsIoStats Stats { get; init; } = new();
        public volatile bool Retired;
        public bool Disposed => Volatile.Read(ref _leases) == 0;

        public bool TryAcquire()
        {
            int current = Volatile.Read(ref _leases);
            while (current > 0)
            {
                int seen = Interlocked.CompareExchange(ref _leases, current + 1, current);
                if (seen == current) return true;
                current = seen;
            }
            return false;
        }

        public void Release()
        {
            if (Interlocked.Decrement(ref _leases) != 0) return;
            try { FileSystem.Destroy(); }
            finally
            {
                (Owner ?? FileSystem as IDisposable)?.Dispose();
                // The slot stays in its index to answer ESTALE until the index is taken again (up to MaxIndex
                // gone slots at once): it must not keep the disposed instance, its image and caches, reachable.
                // Nothing reads FileSystem without a lease, and a slot at zero leases gives none.
                FileSystem = null!;
                Owner = null;
            }
        }
    }
}
