using System.Text.Json.Serialization;

namespace Nydus.Actors.Config;

/// <summary>
/// One entry of <c>backend.registry.mirrors</c> (upstream nydusd up to v2.2; nydus-snapshotter before v0.13 wrote it
/// from containerd's hosts.toml): a registry mirror tried before the registry itself. Requests keep their path and
/// go to <see cref="Host"/> with <see cref="Headers"/> added; a mirror that fails <see cref="FailureLimit"/> times
/// in a row is skipped until <see cref="HealthCheckInterval"/> has passed (and <see cref="PingUrl"/>, when set,
/// answers). The <c>host</c> key is required.
/// </summary>
public sealed record MirrorConfig
{
    /// <summary>Mirror URL, e.g. <c>http://127.0.0.1:65001</c> (scheme optional, https by default).</summary>
    [JsonPropertyName("host"), JsonRequired]
    public string Host { get; init; } = "";

    [JsonPropertyName("ping_url")]
    public string PingUrl { get; init; } = "";

    /// <summary>Extra request headers for the mirror, e.g. Dragonfly's <c>X-Dragonfly-Registry</c>.</summary>
    [JsonPropertyName("headers")]
    public IReadOnlyDictionary<string, string> Headers { get; init; } = new Dictionary<string, string>();

    /// <summary>Send the registry's credentials to the mirror too (older snapshotters' field).</summary>
    [JsonPropertyName("auth_through")]
    public bool AuthThrough { get; init; }

    /// <summary>Seconds a failed mirror is skipped before it is tried (pinged) again.</summary>
    [JsonPropertyName("health_check_interval")]
    public ulong HealthCheckInterval { get; init; } = 5;

    /// <summary>Failures in a row after which the mirror is skipped.</summary>
    [JsonPropertyName("failure_limit")]
    public byte FailureLimit { get; init; } = 5;

    [JsonPropertyName("health_check_pause_elapsed")]
    public ulong HealthCheckPauseElapsed { get; init; } = 300;
}
