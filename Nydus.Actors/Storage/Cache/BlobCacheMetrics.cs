namespace Nydus.Actors.Storage.Cache;

/// <summary>Counters of one <see cref="BlobFileCache"/>; plain <see cref="Interlocked"/> updates, read on demand.</summary>
public sealed class BlobCacheMetrics
{
    private long _hits;
    private long _misses;
    private long _hitBytes;
    private long _fetchedBytes;
    private long _evictedBlobs;
    private long _invalidations;
    private long _readAheads;
    private long _readAheadBytes;
    private long _readAheadFailures;

    /// <summary>Reads served entirely from cache files.</summary>
    public long Hits => Interlocked.Read(ref _hits);

    /// <summary>Reads that needed at least one backend fetch (their own or one they waited for).</summary>
    public long Misses => Interlocked.Read(ref _misses);

    public long HitBytes => Interlocked.Read(ref _hitBytes);

    /// <summary>Bytes fetched from the backend into cache files.</summary>
    public long FetchedBytes => Interlocked.Read(ref _fetchedBytes);

    public long EvictedBlobs => Interlocked.Read(ref _evictedBlobs);

    /// <summary>Ranges dropped because data read from them failed validation.</summary>
    public long Invalidations => Interlocked.Read(ref _invalidations);

    /// <summary>Read-ahead fetches that completed (see <see cref="BlobFileCache"/>); their bytes are in <see cref="FetchedBytes"/> too.</summary>
    public long ReadAheads => Interlocked.Read(ref _readAheads);

    public long ReadAheadBytes => Interlocked.Read(ref _readAheadBytes);

    /// <summary>Read-ahead fetches that failed or were cancelled at unmount.</summary>
    public long ReadAheadFailures => Interlocked.Read(ref _readAheadFailures);

    internal void RecordReadAhead(long bytes)
    {
        Interlocked.Increment(ref _readAheads);
        Interlocked.Add(ref _readAheadBytes, bytes);
    }

    internal void RecordReadAheadFailure() => Interlocked.Increment(ref _readAheadFailures);

    internal void RecordHit(long bytes)
    {
        Interlocked.Increment(ref _hits);
        Interlocked.Add(ref _hitBytes, bytes);
    }

    internal void RecordMiss() => Interlocked.Increment(ref _misses);

    internal void RecordFetch(long bytes) => Interlocked.Add(ref _fetchedBytes, bytes);

    internal void RecordEviction() => Interlocked.Increment(ref _evictedBlobs);

    internal void RecordInvalidation() => Interlocked.Increment(ref _invalidations);
}
