namespace Nydus.Actors.Storage;

/// <summary>
/// How an image reader gets the bytes of its chunks: fetch, decompress, check. Injected into RAFS
/// (<c>RafsOpenOptions.ChunkReader</c>) by whoever opens the image, so that RAFS reaches storage only through this
/// interface and never needs to know whether a cache sits under the backend. Implementations are thread-safe and
/// allocation-free per call (they run on FUSE worker threads).
/// </summary>
public interface IChunkReader
{
    void Read(ReadOnlySpan<ChunkRequest> chunks, Span<byte> destination, bool validateDigests, int mergeSize);
}

/// <summary>Chunks straight from their blobs' backends (<see cref="BlobChunkReader"/>), no cache to heal.</summary>
public sealed class DirectChunkReader : IChunkReader
{
    public static readonly DirectChunkReader Instance = new();

    private DirectChunkReader()
    {
    }

    public void Read(ReadOnlySpan<ChunkRequest> chunks, Span<byte> destination, bool validateDigests, int mergeSize) =>
        BlobChunkReader.Read(chunks, destination, validateDigests, mergeSize);
}
