using Nydus.Actors.Config;

namespace Nydus.Actors.Storage.Cache;

/// <summary>Where <see cref="BlobFileCache"/> keeps its files and how much disk it may use.</summary>
public sealed record BlobCacheSettings
{
    /// <summary>Granularity of the presence map. A page, so that holes of the sparse data file line up with it.</summary>
    public const int DefaultBlockSize = 4096;

    public required string WorkDir { get; init; }

    /// <summary>Disk budget for <see cref="BlobFileCache.TrimToLimit()"/>; 0 means unlimited.</summary>
    public long DiskLimitBytes { get; init; }

    public int BlockSize { get; init; } = DefaultBlockSize;

    /// <summary>
    /// Upstream's <c>amplify_io</c> (V2 <c>rafs.batch_size</c>): an on-demand miss extends its backend request over
    /// the following missing blocks of the same blob up to this many bytes, all stored in the cache. Every small
    /// file read cold from a registry would otherwise cost a request of its own; 0 turns it off.
    /// </summary>
    public int ReadAmplifyBytes { get; init; }

    /// <summary>
    /// How many read-ahead fetches may run per blob (see <see cref="BlobFileCache"/>); 0 turns read-ahead off. Only
    /// with <see cref="ReadAmplifyBytes"/> &gt; 0, whose size each read-ahead has. Mounts take the daemon's
    /// <see cref="BlobCacheRegistry.ReadAheadWindows"/>.
    /// </summary>
    public int ReadAheadWindows { get; init; }

    /// <summary>Settings of a <c>blobcache</c>/<c>filecache</c> section; null for other cache types.</summary>
    public static BlobCacheSettings? FromConfig(CacheConfigV2 config) =>
        config.IsFileCache
            ? new BlobCacheSettings { WorkDir = config.FileCache?.WorkDir ?? "." }
            : null;
}
