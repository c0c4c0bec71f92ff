using System.Text.Json.Serialization;

namespace Nydus.Actors.Config;

/// <summary><c>rafs</c>: how the filesystem itself is served.</summary>
public sealed record RafsConfigV2
{
    public const string DirectMode = "direct";
    public const string CachedMode = "cached";

    /// <summary>Largest accepted <see cref="BatchSize"/> (256 MiB).</summary>
    public const ulong MaxBatchSize = 0x1000_0000;

    /// <summary><c>direct</c> (metadata read in place, almost always wanted) or <c>cached</c> (loaded into memory).</summary>
    [JsonPropertyName("mode")]
    public string Mode { get; init; } = DirectMode;

    /// <summary>User reads are amplified to this many bytes per backend request; 0 disables amplification.</summary>
    [JsonPropertyName("batch_size")]
    public ulong BatchSize { get; init; } = 1024 * 1024;

    /// <summary>Check chunk digests. RAFS v6 over FUSE refuses to mount with it set.</summary>
    [JsonPropertyName("validate")]
    public bool Validate { get; init; }

    [JsonPropertyName("enable_xattr")]
    public bool EnableXattr { get; init; }

    /// <summary>Per-file I/O counters (<c>/api/v1/metrics/files</c>); costly, keep off in production.</summary>
    [JsonPropertyName("iostats_files")]
    public bool IostatsFiles { get; init; }

    /// <summary>Record first access per inode (<c>/api/v1/metrics/pattern</c>).</summary>
    [JsonPropertyName("access_pattern")]
    public bool AccessPattern { get; init; }

    /// <summary>Record recently read inodes (<c>/api/v1/metrics/files?latest=true</c>).</summary>
    [JsonPropertyName("latest_read_files")]
    public bool LatestReadFiles { get; init; }

    /// <summary>File-level prefetch. Absent table: everything zero (see <see cref="PrefetchConfigV2.Absent"/>).</summary>
    [JsonPropertyName("prefetch")]
    public PrefetchConfigV2 Prefetch { get; init; } = PrefetchConfigV2.Absent;
}
