using Nydus.Actors.Daemon;
using Nydus.Actors.Fuse.Abi;
using Nydus.Actors.Fuse.FileSystem;
using Nydus.Actors.Interop;
using Nydus.Actors.Rafs.Metadata;
using Nydus.Actors.Storage;
using Serilog;

namespace Nydus.Actors.Rafs;

/// <summary>
/// Serves a <see cref="RafsImage"/> (RAFS v5, RAFS v6 or plain EROFS) over FUSE, read-only. Called concurrently
/// from the session's worker threads; holds no per-node state, because node ids are functions of the image: the
/// image's inode number, except that the root is FUSE's node 1 (and an inode numbered 1, if the root is not, takes
/// the root's number). The same image therefore yields the same node ids in any process, which a handoff needs.
/// </summary>
public sealed class RafsFileSystem : IFuseFileSystem
{
    private static readonly ILogger Log = Serilog.Log.ForContext<RafsFileSystem>();

    private readonly RafsImage _image;
    private readonly TimeSpan _attrTimeout;
    private readonly TimeSpan _entryTimeout;
    private readonly ErrorEventLog _events;

    /// <param name="image">The image; owned by the caller.</param>
    /// <param name="cacheTimeout">How long the kernel may cache entries and attributes. The image never changes
    /// under a mount (a remount tells the kernel to drop what it cached), so this can be long.</param>
    public RafsFileSystem(RafsImage image, TimeSpan? cacheTimeout = null, ErrorEventLog? events = null)
    {
        _image = image;
        _attrTimeout = _entryTimeout = cacheTimeout ?? TimeSpan.FromHours(1);
        // Without a daemon's log (tools, tests) the errors are kept here alone.
        _events = events ?? new ErrorEventLog();
    }

    public RafsImage Image => _image;

    public bool IsReadOnly => true;

    public bool SupportsReadDirPlus => true;

    /// <summary>Images need no handles: <see cref="Open"/> and <see cref="OpenDir"/> answer ENOSYS.</summary>
    public bool SupportsZeroMessageOpen => true;

    public bool IsImmutable => true;

    private ulong ToNodeId(ulong ino) =>
        ino == _image.RootInode ? FuseProtocol.RootId : ino == FuseProtocol.RootId ? _image.RootInode : ino;

    // The mapping swaps two numbers at most, so it is its own inverse.
    private ulong ToIno(ulong nodeId) => ToNodeId(nodeId);

    public Errno Lookup(in FuseContext context, ulong parent, ReadOnlySpan<byte> name, out FuseEntry entry)
    {
        entry = default;
        try
        {
            if (!_image.TryLookup(ToIno(parent), name, out var ino)) return Errno.ENOENT;
            FillEntry(_image.GetAttr(ino), ref entry);
            return Errno.Success;
        }
        catch (RafsException e)
        {
            return Fail(e, context, parent);
        }
    }

    public Errno GetAttr(in FuseContext context, ulong nodeId, ulong? handle, out FuseAttr attr, out TimeSpan timeout)
    {
        attr = default;
        timeout = _attrTimeout;
        try
        {
            FillAttr(_image.GetAttr(ToIno(nodeId)), ref attr);
            return Errno.Success;
        }
        catch (RafsException e)
        {
            return Fail(e, context, nodeId);
        }
    }

    public Errno ReadLink(in FuseContext context, ulong nodeId, Span<byte> target, out int length)
    {
        length = 0;
        try
        {
            var ino = ToIno(nodeId);
            if (_image.GetAttr(ino).Type != InodeType.Symlink) return Errno.EINVAL;
            length = _image.ReadLink(ino, target);
            if (length > target.Length) return Errno.ENAMETOOLONG;
            return Errno.Success;
        }
        catch (RafsException e)
        {
            return Fail(e, context, nodeId);
        }
    }

    /// <summary>
    /// ENOSYS switches the kernel to "no open" for this connection (upstream RAFS does the same): it stops sending
    /// OPEN and RELEASE altogether and keeps file pages cached across opens (FOPEN_KEEP_CACHE is its default then),
    /// so a warm read of a file costs no request at all. Writes never get here: the mount is read-only.
    /// </summary>
    public Errno Open(in FuseContext context, ulong nodeId, int flags, out FuseOpenResult result)
    {
        result = default;
        return (flags & Libc.O_ACCMODE) != Libc.O_RDONLY ? Errno.EROFS : Errno.ENOSYS;
    }

    /// <summary>
    /// ENOSYS, as upstream's RAFS answers (fuse-backend-rs' default): an image has nothing to flush, and the kernel then
    /// stops sending FLUSH on close for the whole connection. Besides saving a request per close, a close then never
    /// waits on the daemon, so a process closing files during a handoff or after a crash cannot block in the kernel.
    /// </summary>
    public Errno Flush(in FuseContext context, ulong nodeId, ulong handle, ulong lockOwner) => Errno.ENOSYS;

    public Errno Read(in FuseContext context, ulong nodeId, ulong handle, long offset, Span<byte> buffer, out int bytesRead)
    {
        bytesRead = 0;
        try
        {
            bytesRead = _image.Read(ToIno(nodeId), offset, buffer);
            return Errno.Success;
        }
        catch (StorageException e)
        {
            // The data could not be fetched, decompressed or verified: this read fails, others go on.
            Log.Warning("Read of node {NodeId} at {Offset} failed: {Error}", nodeId, offset, e.Message);
            _events.Record(e.Message);
            return Errno.EIO;
        }
        catch (RafsException e)
        {
            return Fail(e, context, nodeId);
        }
    }

    public Errno StatFs(in FuseContext context, ulong nodeId, out FuseKstatfs stat)
    {
        stat = default;
        stat.BlockSize = InodeAttr.BlockSize;
        stat.FragmentSize = InodeAttr.BlockSize;
        stat.NameLength = 255;
        stat.Files = _image.InodeCount;
        return Errno.Success;
    }

    public Errno GetXattr(in FuseContext context, ulong nodeId, ReadOnlySpan<byte> name, Span<byte> value, out int size)
    {
        size = 0;
        if (!_image.HasXattrs) return Errno.ENODATA;
        try
        {
            var length = _image.GetXattr(ToIno(nodeId), name, value);
            if (length < 0) return Errno.ENODATA;
            size = length;
            return !value.IsEmpty && length > value.Length ? Errno.ERANGE : Errno.Success;
        }
        catch (RafsException e)
        {
            return Fail(e, context, nodeId);
        }
    }

    public Errno ListXattr(in FuseContext context, ulong nodeId, Span<byte> list, out int size)
    {
        size = 0;
        if (!_image.HasXattrs) return Errno.Success;
        try
        {
            size = _image.ListXattrs(ToIno(nodeId), list);
            return !list.IsEmpty && size > list.Length ? Errno.ERANGE : Errno.Success;
        }
        catch (RafsException e)
        {
            return Fail(e, context, nodeId);
        }
    }

    /// <summary>As <see cref="Open"/>: "no opendir", and the kernel then caches listings (FOPEN_CACHE_DIR).</summary>
    public Errno OpenDir(in FuseContext context, ulong nodeId, int flags, out FuseOpenResult result)
    {
        result = default;
        return Errno.ENOSYS;
    }

    public Errno ReadDir(in FuseContext context, ulong nodeId, ulong handle, long offset, ref FuseDirectoryWriter writer) =>
        ListDirectory(context, nodeId, offset, ref writer);

    public Errno ReadDirPlus(in FuseContext context, ulong nodeId, ulong handle, long offset, ref FuseDirectoryWriter writer) =>
        ListDirectory(context, nodeId, offset, ref writer);

    private Errno ListDirectory(in FuseContext context, ulong nodeId, long offset, ref FuseDirectoryWriter writer)
    {
        try
        {
            var ino = ToIno(nodeId);
            if (_image.GetAttr(ino).Type != InodeType.Directory) return Errno.ENOTDIR;
            // A ref struct cannot hold a ref to another ref struct: the sink works on a copy that is handed back.
            var sink = new DirectorySink(this, writer);
            try
            {
                _image.ReadDir(ino, offset, ref sink);
            }
            finally
            {
                writer = sink.Writer;
            }
            return Errno.Success;
        }
        catch (RafsException e)
        {
            return Fail(e, context, nodeId);
        }
    }

    public Errno Access(in FuseContext context, ulong nodeId, int mask) =>
        (mask & 2) != 0 ? Errno.EROFS : Errno.Success;

    private void FillEntry(in InodeAttr attr, ref FuseEntry entry)
    {
        entry.NodeId = ToNodeId(attr.Ino);
        entry.Generation = 0;
        entry.EntryTimeout = _entryTimeout;
        entry.AttrTimeout = _attrTimeout;
        FillAttr(attr, ref entry.Attr);
    }

    private static void FillAttr(in InodeAttr source, ref FuseAttr attr)
    {
        attr.Ino = source.Ino;
        attr.Mode = source.Mode;
        attr.Nlink = source.NLink;
        attr.Uid = source.Uid;
        attr.Gid = source.Gid;
        attr.Rdev = source.Rdev;
        attr.Size = source.Size;
        attr.Blocks = source.Blocks;
        attr.BlkSize = InodeAttr.BlockSize;
        // fuse_attr's u64 times are time64_t to the kernel: a pre-1970 time travels as its two's complement.
        var seconds = unchecked((ulong)source.MtimeSeconds);
        attr.Mtime = attr.Atime = attr.Ctime = seconds;
        attr.MtimeNsec = attr.AtimeNsec = attr.CtimeNsec = source.MtimeNanoseconds;
    }

    /// <summary>An unknown inode is ENOENT; anything else wrong with the metadata is logged and EIO.</summary>
    private Errno Fail(RafsException e, in FuseContext context, ulong nodeId)
    {
        if (e.Kind == RafsErrorKind.NoSuchInode) return Errno.ENOENT;
        Log.Warning("{Opcode} on node {NodeId} of {Image} failed: {Error}", context.Opcode, nodeId, _image.Path, e.Message);
        return Errno.EIO;
    }

    /// <summary>Packs the image's directory entries straight into the reply buffer.</summary>
    private ref struct DirectorySink : IDirEntrySink
    {
        private readonly RafsFileSystem _fs;
        private FuseDirectoryWriter _writer;

        public DirectorySink(RafsFileSystem fs, FuseDirectoryWriter writer)
        {
            _fs = fs;
            _writer = writer;
        }

        public readonly FuseDirectoryWriter Writer => _writer;

        public bool TryAdd(scoped ReadOnlySpan<byte> name, ulong ino, InodeType type, long nextOffset)
        {
            if (!_writer.IsPlus || IsDotOrDotDot(name))
                return _writer.TryAdd(ino, name, (uint)type, nextOffset);
            if (!_writer.HasRoomFor(name.Length)) return false;
            var entry = default(FuseEntry);
            _fs.FillEntry(_fs._image.GetAttr(ino), ref entry);
            return _writer.TryAddPlus(in entry, name, nextOffset);
        }

        private static bool IsDotOrDotDot(ReadOnlySpan<byte> name) =>
            name.Length switch
            {
                1 => name[0] == (byte)'.',
                2 => name[0] == (byte)'.' && name[1] == (byte)'.',
                _ => false,
            };
    }
}
