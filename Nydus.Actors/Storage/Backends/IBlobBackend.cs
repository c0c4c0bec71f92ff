namespace Nydus.Actors.Storage.Backends;

/// <summary>
/// Reads byte ranges of blobs addressed by blob id. Implementations are called concurrently from many FUSE
/// worker threads and must be thread-safe.
/// </summary>
public interface IBlobBackend : IDisposable
{
    /// <summary>Size of the blob in bytes; throws <see cref="StorageException"/> when the blob is missing.</summary>
    long GetBlobSize(string blobId);

    /// <summary>
    /// Fills all of <paramref name="destination"/> with the blob bytes starting at <paramref name="offset"/>;
    /// throws <see cref="StorageException"/> (kind BlobTooShort) when the blob ends first.
    /// </summary>
    void Read(string blobId, long offset, Span<byte> destination);

    /// <summary>
    /// <see cref="Read(string, long, Span{byte})"/> that gives up with <see cref="OperationCanceledException"/> once
    /// <paramref name="cancellation"/> is cancelled (background reads stopped at unmount). Backends that cannot stop
    /// a read midway only check the token first.
    /// </summary>
    void Read(string blobId, long offset, Span<byte> destination, CancellationToken cancellation)
    {
        cancellation.ThrowIfCancellationRequested();
        Read(blobId, offset, destination);
    }
}
