namespace Nydus.Actors.Rafs;

/// <summary>How to open an image.</summary>
public sealed record RafsOpenOptions
{
    public static readonly RafsOpenOptions Default = new();

    /// <summary>
    /// Uid reported for every inode of a RAFS image without the EXPLICIT_UID_GID flag; nydusd reports its own
    /// euid there, so the daemon passes its euid here.
    /// </summary>
    public uint DefaultUid { get; init; }

    /// <summary>Gid counterpart of <see cref="DefaultUid"/>.</summary>
    public uint DefaultGid { get; init; }

    /// <summary>Check every chunk against its digest when read (upstream's <c>digest_validate</c>).</summary>
    public bool ValidateDigests { get; init; }

    /// <summary>Largest backend read that adjacent chunks are merged into (upstream's <c>amplify_io</c>).</summary>
    public int MergeSize { get; init; } = 1 << 20;

    /// <summary>How chunk data is fetched: the opener injects a cache-aware reader when a cache sits under the
    /// backend; plain backend reads by default.</summary>
    public Storage.IChunkReader ChunkReader { get; init; } = Storage.DirectChunkReader.Instance;
}
