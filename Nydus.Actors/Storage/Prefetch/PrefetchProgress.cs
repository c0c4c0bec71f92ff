namespace Nydus.Actors.Storage.Prefetch;

/// <summary>A snapshot of a prefetcher's counters (<see cref="BlobPrefetcher"/>, <see cref="FilePrefetcher"/>).</summary>
public sealed record PrefetchProgress
{
    /// <summary>Bytes of the pieces read through the cache so far (ranges that were already cached count too).</summary>
    public long BytesPrefetched { get; init; }

    /// <summary>What is prefetched: "blobs" (whole blobs) or "files" (listed files or the image's prefetch table).</summary>
    public string Kind { get; init; } = "blobs";

    /// <summary>Chunks the planned pieces cover before merging (file prefetch only; 0 for whole blobs).</summary>
    public long ChunksTotal { get; init; }

    /// <summary>Bytes fetched from the backend by the prefetch (what was cached already costs nothing).</summary>
    public long BytesFetched { get; init; }

    /// <summary>Pieces planned (one backend request at most each); 0 until the plan is made.</summary>
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
