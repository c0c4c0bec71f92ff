namespace Nydus.Actors.Storage.Prefetch;

/// <summary>A snapshot of a <see cref="BlobPrefetcher"/>'s counters.</summary>
public sealed record PrefetchProgress
{
    /// <summary>Bytes of the pieces read through the cache so far (ranges that were already cached count too).</summary>
    public long BytesPrefetched { get; init; }

    /// <summary>Pieces planned; 0 until the blob sizes are known.</summary>
    public long PiecesTotal { get; init; }

    public long PiecesDone { get; init; }

    /// <summary>Pieces whose read failed.</summary>
    public long PiecesFailed { get; init; }

    /// <summary>Planned pieces neither done nor failed (those skipped by cancellation stay here).</summary>
    public long PiecesRemaining => PiecesTotal - PiecesDone - PiecesFailed;

    /// <summary>Blobs left out because their size could not be learned.</summary>
    public long BlobsFailed { get; init; }

    public DateTimeOffset? StartedAt { get; init; }

    /// <summary>When the last worker stopped (all work done, or cancelled); null while running.</summary>
    public DateTimeOffset? FinishedAt { get; init; }
}
