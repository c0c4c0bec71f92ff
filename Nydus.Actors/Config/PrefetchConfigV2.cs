using System.Text.Json.Serialization;

namespace Nydus.Actors.Config;

/// <summary>
/// <c>prefetch</c> table of <c>cache</c> (blob level) and <c>rafs</c> (file level).
/// </summary>
/// <remarks>
/// Two sets of defaults, as upstream has them: a present table fills missing keys from the initializers below
/// (8 threads, 1 MiB batches), while an absent table is <see cref="Absent"/>, all zeros (serde's derived
/// <c>Default</c>). <c>enable</c> is required whenever the table is present. Unlike the legacy format,
/// <see cref="PrefetchAll"/> defaults to false here.
/// </remarks>
public sealed record PrefetchConfigV2
{
    /// <summary>Upper bound of <see cref="BatchSize"/> when prefetch is enabled (256 MiB).</summary>
    public const ulong MaxBatchSize = 0x1000_0000;

    /// <summary>Upper bound of <see cref="Threads"/> when prefetch is enabled.</summary>
    public const ulong MaxThreads = 1024;

    /// <summary>What an absent <c>prefetch</c> table means: disabled, no threads, zero batch.</summary>
    public static PrefetchConfigV2 Absent { get; } = new() { Threads = 0, BatchSize = 0 };

    [JsonPropertyName("enable"), JsonRequired]
    public bool Enable { get; init; }

    /// <summary>Worker count; the V2 key is <c>threads</c> (legacy: <c>threads_count</c>).</summary>
    [JsonPropertyName("threads")]
    public ulong Threads { get; init; } = 8;

    /// <summary>Bytes merged into one backend request.</summary>
    [JsonPropertyName("batch_size")]
    public ulong BatchSize { get; init; } = 1024 * 1024;

    /// <summary>Bytes per second; 0 means unlimited. Values below the chunk size are raised to it by the reader.</summary>
    [JsonPropertyName("bandwidth_limit")]
    public uint BandwidthLimit { get; init; }

    /// <summary>After the prefetch list, fetch the whole filesystem.</summary>
    [JsonPropertyName("prefetch_all")]
    public bool PrefetchAll { get; init; }

    /// <summary>Ask a Dragonfly proxy to cache whole blobs (range-less GET) instead of per-chunk prefetch.</summary>
    [JsonPropertyName("stream_prefetch")]
    public bool StreamPrefetch { get; init; }
}
