using Nydus.Actors.Storage;
using Nydus.Actors.Storage.Backends;

namespace Nydus.Actors.Tests.Storage.Prefetch;

/// <summary>
/// Wraps a backend to count (and optionally slow down) its range reads, so tests see what reaches the network;
/// with <c>refuse</c> every call fails, proving a read was served by the cache alone.
/// </summary>
public sealed class RequestCountingBackend : IBlobBackend
{
    private readonly IBlobBackend? _inner;
    private readonly TimeSpan _delay;
    private int _reads;

    public RequestCountingBackend(IBlobBackend? inner, TimeSpan delay = default)
    {
        _inner = inner;
        _delay = delay;
    }

    /// <summary>A backend that refuses every call.</summary>
    public static RequestCountingBackend Refusing() => new(null);

    public int Reads => Volatile.Read(ref _reads);

    public long GetBlobSize(string blobId) =>
        _inner?.GetBlobSize(blobId) ?? throw new StorageException(StorageErrorKind.IoError, $"refusing to size blob {blobId}");

    public void Read(string blobId, long offset, Span<byte> destination)
    {
        Interlocked.Increment(ref _reads);
        if (_inner is null)
        {
            throw new StorageException(StorageErrorKind.IoError, $"refusing to read blob {blobId} at {offset}");
        }

        if (_delay > TimeSpan.Zero)
        {
            Thread.Sleep(_delay);
        }

        _inner.Read(blobId, offset, destination);
    }

    public void Dispose() => _inner?.Dispose();
}
