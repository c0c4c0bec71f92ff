using Microsoft.Win32.SafeHandles;
using Nydus.Actors.Block;

namespace Nydus.Actors.Fscache;

/// <summary>
/// What an fscache object holds, read by byte range. EROFS over fscache reads a RAFS v6 image as upstream lays it
/// out for the kernel: the bootstrap object is the bootstrap file as it is (upstream copies the file), a data blob
/// object is the blob in its uncompressed form, each chunk at its uncompressed offset (upstream's
/// <c>fetch_range_uncompressed</c>; the same bytes as the blob's extent of the image's block device).
/// </summary>
public abstract class FscacheObjectSource
{
    /// <summary>The size answered with <c>copen</c>.</summary>
    public abstract long Size { get; }

    /// <summary>Fills <paramref name="destination"/> from <paramref name="offset"/> (inside <see cref="Size"/>).
    /// Throws StorageException/RafsException/IOException when the bytes cannot be had.</summary>
    public abstract void Read(long offset, Span<byte> destination);

    /// <summary>For logs.</summary>
    public abstract string Describe();

    /// <summary>Bytes per piece when the whole object is to be prefetched into its cache file on OPEN (the entry's
    /// <c>cache.prefetch</c>, as upstream's fscache prefetches data blobs); 0 for none.</summary>
    public virtual int PrefetchPiece => 0;
}

/// <summary>A bootstrap object: the file's bytes.</summary>
public sealed class BootstrapObjectSource(string path) : FscacheObjectSource, IDisposable
{
    private readonly SafeFileHandle _file = File.OpenHandle(path, FileMode.Open, FileAccess.Read);

    public override long Size => RandomAccess.GetLength(_file);

    public override void Read(long offset, Span<byte> destination)
    {
        int done = 0;
        while (done < destination.Length)
        {
            int n = RandomAccess.Read(_file, destination[done..], offset + done);
            if (n == 0) throw new IOException($"bootstrap {path} ends at {offset + done}, before {offset + destination.Length}");
            done += n;
        }
    }

    public override string Describe() => $"bootstrap {path}";

    public void Dispose() => _file.Dispose();
}

/// <summary>A data blob object: the blob's extent of the image's <see cref="BlockAddressSpace"/>.</summary>
/// <remarks>The size is the extent's, whole 4 KiB blocks (the tail past the blob's uncompressed size reads as zeros).</remarks>
/// <param name="prefetchPiece">See <see cref="FscacheObjectSource.PrefetchPiece"/>.</param>
public sealed class DataBlobObjectSource(BlockAddressSpace image, BlockExtent extent, string blobId, int prefetchPiece = 0) : FscacheObjectSource
{
    public override int PrefetchPiece => prefetchPiece;

    public override long Size => extent.BlockCount * BlockAddressSpace.BlockSize;

    public override void Read(long offset, Span<byte> destination) =>
        image.Read(extent.StartBlock * BlockAddressSpace.BlockSize + offset, destination);

    public override string Describe() => $"data blob {blobId}";
}

/// <summary>Finds what an OPEN's cookie names. Implemented over the blob cache manager (<see cref="BlobCacheCatalog"/>).</summary>
public interface IFscacheCatalog
{
    /// <summary>The object's source, or null when the domain has no such blob (the OPEN is refused with ENOENT).
    /// Throws (with a message naming the file) when the entry exists but cannot be opened.</summary>
    FscacheObjectSource? Resolve(string domainId, string blobId);
}
