using System.Text.Json.Serialization;

namespace Nydus.Actors.Config;

/// <summary>
/// <c>cache</c>: where fetched blob data is kept. <see cref="Type"/> is one of <c>blobcache</c>/<c>filecache</c>
/// (same thing, needs <see cref="FileCache"/>), <c>fscache</c> (needs <see cref="FsCache"/>), or <c>""</c>/<c>dummycache</c>
/// (no cache: every read goes to the backend).
/// </summary>
public sealed record CacheConfigV2
{
    public const string BlobCacheType = "blobcache";
    public const string FileCacheType = "filecache";
    public const string FsCacheType = "fscache";
    public const string DummyCacheType = "dummycache";

    [JsonPropertyName("type")]
    public string Type { get; init; } = "";

    /// <summary>Kept for compatibility; upstream no longer reads it.</summary>
    [JsonPropertyName("compressed")]
    public bool Compressed { get; init; }

    /// <summary>Check chunk digests of data read from the cache.</summary>
    [JsonPropertyName("validate")]
    public bool Validate { get; init; }

    /// <summary>Blob-level prefetch. Absent table: everything zero (see <see cref="PrefetchConfigV2.Absent"/>).</summary>
    [JsonPropertyName("prefetch")]
    public PrefetchConfigV2 Prefetch { get; init; } = PrefetchConfigV2.Absent;

    [JsonPropertyName("filecache")]
    public FileCacheConfig? FileCache { get; init; }

    [JsonPropertyName("fscache")]
    public FsCacheConfig? FsCache { get; init; }

    /// <summary><c>blobcache</c> and <c>filecache</c> name the same file-backed cache.</summary>
    [JsonIgnore]
    public bool IsFileCache => Type is BlobCacheType or FileCacheType;

    [JsonIgnore]
    public bool IsFsCache => Type == FsCacheType;
}
