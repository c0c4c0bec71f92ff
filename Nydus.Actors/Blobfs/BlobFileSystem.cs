using System.Text;
using Nydus.Actors.Block;
using Nydus.Actors.Fuse.Abi;
using Nydus.Actors.Fuse.FileSystem;
using Nydus.Actors.Interop;
using Nydus.Actors.Rafs;
using Nydus.Actors.Storage;
using Serilog;

namespace Nydus.Actors.Blobfs;

/// <summary>
/// blobfs (upstream's mode for VM guests that mount images with their own kernel): instead of the image's tree, a
/// read-only directory holding the image's files themselves, for the guest's EROFS to mount over loop devices:
/// <list type="bullet">
/// <item><c>image.boot</c>: the metadata blob (bootstrap);</item>
/// <item>one file per data blob, named by its blob id, holding the blob in its uncompressed form (each chunk at its
/// uncompressed offset, as the EROFS chunk indexes address it), fetched lazily through the image's backend and blob
/// cache on the first read of each range;</item>
/// <item><c>devices</c>: the data blobs' names, one a line, in device-table order (the order of the guest's
/// <c>mount -t erofs -o device=...</c> options).</item>
/// </list>
/// Every byte comes from a <see cref="BlockAddressSpace"/> (the same layout the NBD export serves as one device), so
/// the contents are what that device holds at each extent. Thread-safe: the queue workers call it concurrently.
/// </summary>
public sealed class BlobFileSystem : IFuseFileSystem, IDisposable
{
    public const string BootstrapName = "image.boot";
    public const string DevicesName = "devices";

    private const ulong RootId = 1;
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);
    private static readonly ILogger Log = Serilog.Log.ForContext<BlobFileSystem>();

    private readonly BlockAddressSpace _space;
    private readonly Node[] _files;
    private readonly DateTimeOffset _time;

    /// <param name="space">The image's block layout; owned (disposed with this).</param>
    /// <param name="imagePath">The bootstrap file (its modification time becomes every entry's).</param>
    public BlobFileSystem(BlockAddressSpace space, string imagePath)
    {
        _space = space;
        _time = File.GetLastWriteTimeUtc(imagePath);
        var files = new List<Node>();
        var dataNames = new List<string>();
        foreach (BlockExtent extent in space.Extents)
        {
            if (extent.Kind == BlockExtentKind.Metadata)
            {
                files.Add(new Node(BootstrapName, extent.StartBlock * BlockAddressSpace.BlockSize, extent.BlockCount * BlockAddressSpace.BlockSize, null));
            }
            else if (extent.Kind == BlockExtentKind.Data)
            {
                // A blob id is a hex digest; a plain EROFS extra device is named by its file: its file name then.
                string name = Path.GetFileName(extent.Name);
                if (name.Length == 0 || name is BootstrapName or DevicesName || dataNames.Contains(name)) name = $"blob-{dataNames.Count + 1}";
                dataNames.Add(name);
                files.Add(new Node(name, extent.StartBlock * BlockAddressSpace.BlockSize, extent.BlockCount * BlockAddressSpace.BlockSize, null));
            }
        }

        byte[] devices = Encoding.UTF8.GetBytes(string.Concat(dataNames.Select(n => n + "\n")));
        files.Add(new Node(DevicesName, 0, devices.Length, devices));
        _files = [.. files];
    }

    /// <summary>The files served, in listing order (names and sizes, for logs and tests).</summary>
    public IEnumerable<(string Name, long Size)> Files => _files.Select(f => (f.Name, f.Size));

    public bool IsImmutable => true;

    public Errno Lookup(in FuseContext context, ulong parent, ReadOnlySpan<byte> name, out FuseEntry entry)
    {
        entry = default;
        if (parent != RootId) return Errno.ENOTDIR;
        // A handful of files: a scan of their UTF-8 names, no string made per lookup.
        int index = 0;
        while (index < _files.Length && !_files[index].NameBytes.AsSpan().SequenceEqual(name)) index++;
        if (index == _files.Length) return Errno.ENOENT;
        entry.NodeId = FileId(index);
        entry.Attr = Attr(entry.NodeId);
        entry.EntryTimeout = Timeout;
        entry.AttrTimeout = Timeout;
        return Errno.Success;
    }

    public Errno GetAttr(in FuseContext context, ulong nodeId, ulong? handle, out FuseAttr attr, out TimeSpan timeout)
    {
        timeout = Timeout;
        attr = default;
        if (nodeId != RootId && !TryFile(nodeId, out _)) return Errno.ENOENT;
        attr = Attr(nodeId);
        return Errno.Success;
    }

    public Errno Open(in FuseContext context, ulong nodeId, int flags, out FuseOpenResult result)
    {
        result = new FuseOpenResult { Flags = FuseOpenFlags.KeepCache };
        if (!TryFile(nodeId, out _)) return nodeId == RootId ? Errno.EISDIR : Errno.ENOENT;
        return (flags & 3) != 0 ? Errno.EROFS : Errno.Success;
    }

    public Errno Read(in FuseContext context, ulong nodeId, ulong handle, long offset, Span<byte> buffer, out int bytesRead)
    {
        bytesRead = 0;
        if (!TryFile(nodeId, out Node file)) return nodeId == RootId ? Errno.EISDIR : Errno.ENOENT;
        if (offset < 0) return Errno.EINVAL;
        if (offset >= file.Size) return Errno.Success;
        int length = (int)Math.Min(buffer.Length, file.Size - offset);
        if (file.Content is { } content)
        {
            content.AsSpan((int)offset, length).CopyTo(buffer);
            bytesRead = length;
            return Errno.Success;
        }

        try
        {
            _space.Read(file.DeviceOffset + offset, buffer[..length]);
        }
        catch (Exception e) when (e is StorageException or RafsException or IOException)
        {
            // The guest's read fails; the blob (and the daemon) stay as they were.
            Log.Error("blobfs: read of {File} at {Offset} (+{Length}) failed: {Error}", file.Name, offset, length, e.Message);
            return Errno.EIO;
        }

        bytesRead = length;
        return Errno.Success;
    }

    public Errno OpenDir(in FuseContext context, ulong nodeId, int flags, out FuseOpenResult result)
    {
        result = new FuseOpenResult { Flags = FuseOpenFlags.KeepCache | FuseOpenFlags.CacheDir };
        return nodeId == RootId ? Errno.Success : Errno.ENOTDIR;
    }

    public Errno ReadDir(in FuseContext context, ulong nodeId, ulong handle, long offset, ref FuseDirectoryWriter writer)
    {
        if (nodeId != RootId) return Errno.ENOTDIR;
        for (long i = offset; i < _files.Length + 2; i++)
        {
            bool added = i switch
            {
                0 => writer.TryAdd(RootId, "."u8, 4, i + 1),
                1 => writer.TryAdd(RootId, ".."u8, 4, i + 1),
                _ => writer.TryAdd(FileId((int)i - 2), _files[i - 2].NameBytes, 8 /* DT_REG */, i + 1),
            };
            if (!added) break;
        }

        return Errno.Success;
    }

    public Errno StatFs(in FuseContext context, ulong nodeId, out FuseKstatfs stat)
    {
        stat = default;
        stat.BlockSize = BlockAddressSpace.BlockSize;
        stat.FragmentSize = BlockAddressSpace.BlockSize;
        stat.NameLength = 255;
        stat.Blocks = (ulong)_files.Sum(f => (f.Size + BlockAddressSpace.BlockSize - 1) / BlockAddressSpace.BlockSize);
        stat.Files = (ulong)_files.Length + 1;
        return Errno.Success;
    }

    public Errno GetXattr(in FuseContext context, ulong nodeId, ReadOnlySpan<byte> name, Span<byte> value, out int size)
    {
        size = 0;
        return Errno.ENODATA;
    }

    public Errno ListXattr(in FuseContext context, ulong nodeId, Span<byte> list, out int size)
    {
        size = 0;
        return Errno.Success;
    }

    public void Dispose() => _space.Dispose();

    private static ulong FileId(int index) => RootId + 1 + (ulong)index;

    private bool TryFile(ulong nodeId, out Node file)
    {
        ulong index = nodeId - RootId - 1;
        if (nodeId > RootId && index < (ulong)_files.Length)
        {
            file = _files[index];
            return true;
        }

        file = default;
        return false;
    }

    private FuseAttr Attr(ulong nodeId)
    {
        var attr = new FuseAttr
        {
            Ino = nodeId,
            Mtime = (ulong)_time.ToUnixTimeSeconds(),
            Ctime = (ulong)_time.ToUnixTimeSeconds(),
            Atime = (ulong)_time.ToUnixTimeSeconds(),
            BlkSize = BlockAddressSpace.BlockSize,
        };
        if (nodeId == RootId)
        {
            attr.Mode = 0x4000 | 0x16D; // S_IFDIR | 0555
            attr.Nlink = 2;
            return attr;
        }

        TryFile(nodeId, out Node file);
        attr.Mode = 0x8000 | 0x124; // S_IFREG | 0444
        attr.Nlink = 1;
        attr.Size = (ulong)file.Size;
        attr.Blocks = (ulong)((file.Size + 511) / 512);
        return attr;
    }

    /// <param name="DeviceOffset">Where the file's bytes start in the block address space.</param>
    /// <param name="Content">The bytes of a file made here (the device list), null for blob files.</param>
    private readonly record struct Node(string Name, long DeviceOffset, long Size, byte[]? Content)
    {
        /// <summary>The name as the FUSE protocol carries it, encoded once.</summary>
        public byte[] NameBytes { get; } = Encoding.UTF8.GetBytes(Name);
    }
}
