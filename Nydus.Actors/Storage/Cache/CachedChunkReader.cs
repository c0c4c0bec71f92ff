using Serilog;

namespace Nydus.Actors.Storage.Cache;

/// <summary>
/// <see cref="BlobChunkReader"/> for chunks whose blobs sit behind a <see cref="BlobFileCache"/>: when a chunk
/// fails to decompress or to match its digest, the cached ranges of the request are dropped and the read is done
/// once more from the backend, so a damaged cache file heals instead of failing reads forever. A second failure
/// means the backend's own data is bad and is reported.
/// </summary>
/// <remarks>
/// An instance is the <see cref="IChunkReader"/> injected into an image whose backend is <paramref name="cache"/>:
/// it knows its cache, nothing looks for one (FUSE mounts and block devices alike).
/// </remarks>
public sealed class CachedChunkReader(BlobFileCache cache) : IChunkReader
{
    private static readonly ILogger Log = Serilog.Log.ForContext(typeof(CachedChunkReader));

    void IChunkReader.Read(ReadOnlySpan<ChunkRequest> chunks, Span<byte> destination, bool validateDigests, int mergeSize)
    {
        try
        {
            BlobChunkReader.Read(chunks, destination, validateDigests, mergeSize);
            return;
        }
        catch (StorageException e) when (e.Kind is StorageErrorKind.DigestMismatch or StorageErrorKind.DecompressionFailed)
        {
            foreach (ref readonly ChunkRequest chunk in chunks)
                cache.Invalidate(chunk.Blob.Id, chunk.CompressedOffset, chunk.CompressedSize);
            Log.Warning("Cached data failed validation ({Reason}); fetching {Chunks} chunks again", e.Message, chunks.Length);
        }

        BlobChunkReader.Read(chunks, destination, validateDigests, mergeSize);
    }
}
