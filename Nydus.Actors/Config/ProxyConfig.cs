using System.Text.Json.Serialization;

namespace Nydus.Actors.Config;

/// <summary>
/// <c>proxy</c> of the HTTP backends: reach the storage through a P2P proxy (Dragonfly dfdaemon) with health checks.
/// An absent table means these per-key defaults, unlike <see cref="PrefetchConfigV2"/>.
/// </summary>
public sealed record ProxyConfig
{
    [JsonPropertyName("url")]
    public string Url { get; init; } = "";

    [JsonPropertyName("ping_url")]
    public string PingUrl { get; init; } = "";

    /// <summary>Go to the storage directly while the proxy's ping fails.</summary>
    [JsonPropertyName("fallback")]
    public bool Fallback { get; init; } = true;

    /// <summary>Seconds between health checks.</summary>
    [JsonPropertyName("check_interval")]
    public ulong CheckInterval { get; init; } = 5;

    [JsonPropertyName("use_http")]
    public bool UseHttp { get; init; }

    /// <summary>Seconds without requests after which health checks pause.</summary>
    [JsonPropertyName("check_pause_elapsed")]
    public ulong CheckPauseElapsed { get; init; } = 300;

    [JsonPropertyName("dragonfly_scheduler_endpoint")]
    public string DragonflySchedulerEndpoint { get; init; } = "";
}
