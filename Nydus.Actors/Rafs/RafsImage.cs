using System.Buffers.Binary;
using Nydus.Actors.Rafs.Layout;
using Nydus.Actors.Rafs.Layout.V5;
using Nydus.Actors.Rafs.Layout.V6;
using Nydus.Actors.Rafs.Metadata;
using Nydus.Actors.Storage;

namespace Nydus.Actors.Rafs;

/// <summary>
/// A read-only filesystem image (RAFS v5, RAFS v6 or plain EROFS) served by inode number. Immutable after
/// <see cref="Open"/>, so every method may be called from many threads at once. Inode numbers are functions of
/// the image (v5: the record's i_ino; v6/EROFS: the nid), stable across processes.
/// Errors: <see cref="RafsException"/> for bad metadata or unknown inodes, <see cref="Storage.StorageException"/>
/// for blob data that cannot be fetched, decompressed or verified.
/// </summary>
public abstract class RafsImage : IDisposable
{
    /// <summary>Largest bootstrap accepted (upstream's RAFS_MAX_METADATA_SIZE is 2 GiB; arrays stop just below).</summary>
    internal const long MaxBootstrapSize = int.MaxValue - 64;

    private protected RafsImage(ImageData data, RafsOpenOptions options)
    {
        Data = data;
        Options = options;
    }

    public string Path => Data.Path;

    public abstract RafsFormat Format { get; }

    public abstract ulong RootInode { get; }

    /// <summary>
    /// False for RAFS images whose superblock says no inode has xattrs; nydusd then answers ENOSYS to
    /// getxattr/listxattr unless configured otherwise.
    /// </summary>
    public abstract bool HasXattrs { get; }

    /// <summary>Number of inodes the superblock declares (statfs f_files).</summary>
    public abstract ulong InodeCount { get; }

    /// <summary>The superblock as upstream reports it (GET /api/v1/daemon/backend).</summary>
    public abstract RafsSuperMeta SuperMeta { get; }

    /// <summary>
    /// The data blobs this image reads through a backend, in blob-table order (slots without a backend are left
    /// out). What a blob-level prefetcher walks.
    /// </summary>
    public abstract IReadOnlyList<BlobRef> Blobs { get; }

    /// <summary>The ids of every data blob in the image's blob table, in table order, whether or not a backend was
    /// given (the blob cache manager reads a bootstrap's table without reading any data). Empty for plain EROFS.</summary>
    public abstract IReadOnlyList<string> DataBlobIds { get; }

    /// <summary>
    /// The image's own prefetch table (<c>nydus-image --prefetch-policy fs</c>): inode numbers (v5) or nids (v6) as
    /// this image addresses them, in table order, up to the first 0. Empty when the image has none.
    /// </summary>
    public abstract IReadOnlyList<ulong> PrefetchTable { get; }

    /// <summary>
    /// Appends the stored blob ranges of every chunk of regular file <paramref name="ino"/> (in file order) to
    /// <paramref name="ranges"/>; data held in the bootstrap itself adds nothing. For prefetching: nothing is read.
    /// </summary>
    public abstract void CollectChunkRanges(ulong ino, List<BlobRange> ranges);

    private protected ImageData Data { get; }

    private protected RafsOpenOptions Options { get; }

    /// <summary>
    /// Opens a bootstrap, detecting the format by magic: RAFS v5 at offset 0, EROFS at 1024 (RAFS v6 when the
    /// superblock has the RAFS_V6 compat bit).
    /// </summary>
    public static RafsImage Open(string bootstrapPath, BlobSource blobs, RafsOpenOptions? options = null)
    {
        ImageData data;
        try
        {
            data = ImageData.OpenFile(bootstrapPath, MaxBootstrapSize);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new RafsException(RafsErrorKind.IoError, $"cannot read bootstrap {bootstrapPath}: {e.Message}", e);
        }

        try
        {
            return Open(data, blobs, options ?? RafsOpenOptions.Default);
        }
        catch
        {
            data.Dispose();
            throw;
        }
    }

    /// <summary>Opens an image already in memory; <paramref name="displayPath"/> names it in errors.</summary>
    public static RafsImage Open(byte[] bootstrap, string displayPath, BlobSource blobs, RafsOpenOptions? options = null) =>
        Open(new ImageData(bootstrap, displayPath), blobs, options ?? RafsOpenOptions.Default);

    private static RafsImage Open(ImageData data, BlobSource blobs, RafsOpenOptions options)
    {
        if (data.Length >= 8 && data.U32(0, "RAFS v5 magic") == RafsV5SuperBlock.Magic)
        {
            return new RafsV5Image(data, blobs, options);
        }

        if (data.Length < ErofsSuperBlock.Offset + ErofsSuperBlock.Size)
        {
            throw new RafsException(RafsErrorKind.OutOfBounds,
                $"bootstrap too short ({data.Length} bytes) for a RAFS v5 or EROFS superblock in {data.Path}");
        }

        uint erofsMagic = data.U32(ErofsSuperBlock.Offset, "EROFS magic");
        if (erofsMagic == ErofsSuperBlock.Magic)
        {
            return new ErofsImage(data, blobs, options);
        }

        uint v5Magic = data.U32(0, "RAFS v5 magic");
        throw new RafsException(RafsErrorKind.InvalidMagic,
            $"invalid RAFS v5 magic 0x{v5Magic:x} and invalid EROFS magic 0x{erofsMagic:x} in {data.Path}");
    }

    /// <summary>Attributes of <paramref name="ino"/>; <see cref="RafsErrorKind.NoSuchInode"/> when unknown.</summary>
    public abstract InodeAttr GetAttr(ulong ino);

    /// <summary>Finds <paramref name="name"/> in directory <paramref name="parent"/> ("." and ".." included).</summary>
    public abstract bool TryLookup(ulong parent, ReadOnlySpan<byte> name, out ulong ino);

    /// <summary>
    /// Feeds entries of directory <paramref name="ino"/> from position <paramref name="offset"/> ("." and ".."
    /// included) into <paramref name="sink"/> until it is full or the directory ends.
    /// </summary>
    public abstract void ReadDir<TSink>(ulong ino, long offset, ref TSink sink)
        where TSink : IDirEntrySink, allows ref struct;

    /// <summary>
    /// Copies the symlink target into <paramref name="destination"/> if it fits; returns the target length.
    /// </summary>
    public abstract int ReadLink(ulong ino, Span<byte> destination);

    /// <summary>
    /// Writes <c>name\0</c> for every xattr into <paramref name="destination"/> if it fits; returns the length
    /// needed (a FUSE size probe passes an empty span).
    /// </summary>
    public abstract int ListXattrs(ulong ino, Span<byte> destination);

    /// <summary>
    /// Copies the value of xattr <paramref name="name"/> into <paramref name="destination"/> if it fits; returns
    /// the value length, or -1 when the inode has no such xattr (ENODATA).
    /// </summary>
    public abstract int GetXattr(ulong ino, ReadOnlySpan<byte> name, Span<byte> destination);

    /// <summary>
    /// Reads file bytes from <paramref name="offset"/>; returns the count, short at end of file, 0 past it.
    /// Fetches chunk data from the blobs on demand.
    /// </summary>
    public abstract int Read(ulong ino, long offset, Span<byte> destination);

    /// <summary>Convenience for callers off the hot path: the symlink target as a new array.</summary>
    /// <summary>The non-null entries of a blob table, for <see cref="Blobs"/>.</summary>
    private protected static BlobRef[] PresentBlobs(BlobRef?[] table)
    {
        var present = new List<BlobRef>(table.Length);
        foreach (BlobRef? blob in table)
        {
            if (blob is not null) present.Add(blob);
        }

        return present.ToArray();
    }

    public byte[] ReadLink(ulong ino)
    {
        int length = ReadLink(ino, Span<byte>.Empty);
        var target = new byte[length];
        ReadLink(ino, target);
        return target;
    }

    /// <summary>Closes the image file; subclasses release what they own first.</summary>
    public virtual void Dispose() => Data.Dispose();
}
