using Nydus.Actors.Storage;
using Nydus.Actors.Storage.Backends;

namespace Nydus.Actors.Tests.Storage;

/// <summary>An in-memory blob store that counts backend reads, to observe chunk merging.</summary>
public sealed class CountingBackend : IBlobBackend
{
    private readonly Dictionary<string, byte[]> _blobs = new();
    private int _reads;

    public int Reads => _reads;

    public List<(long Offset, int Length)> Ranges { get; } = new();

    public CountingBackend Add(string id, byte[] content)
    {
        _blobs[id] = content;
        return this;
    }

    public long GetBlobSize(string blobId) => Get(blobId).Length;

    public void Read(string blobId, long offset, Span<byte> destination)
    {
        byte[] blob = Get(blobId);
        if (offset + destination.Length > blob.Length)
        {
            throw new StorageException(StorageErrorKind.BlobTooShort, $"blob {blobId} too short");
        }

        Interlocked.Increment(ref _reads);
        lock (Ranges)
        {
            Ranges.Add((offset, destination.Length));
        }

        blob.AsSpan((int)offset, destination.Length).CopyTo(destination);
    }

    public void Dispose()
    {
    }

    private byte[] Get(string id) => _blobs.TryGetValue(id, out byte[]? b)
        ? b
        : throw new StorageException(StorageErrorKind.BlobNotFound, $"blob {id} not found");
}
