using System.Text.Json.Serialization;

namespace Nydus.Actors.Config;

/// <summary>
/// <c>backend.http-proxy</c>: blobs served by a local HTTP server, reached by URL or over a Unix socket.
/// The <c>addr</c> key is required.
/// </summary>
public sealed record HttpProxyConfig
{
    /// <summary><c>http://…</c>, <c>https://…</c>, or the absolute path of an existing Unix socket.</summary>
    [JsonPropertyName("addr"), JsonRequired]
    public string Addr { get; init; } = "";

    /// <summary>URL path to the blobs, e.g. <c>/namespace/repo/blobs</c>; ignored over a Unix socket.</summary>
    [JsonPropertyName("path")]
    public string Path { get; init; } = "";

    [JsonPropertyName("skip_verify")]
    public bool SkipVerify { get; init; }

    [JsonPropertyName("ca_cert_files")]
    public IReadOnlyList<string> CaCertFiles { get; init; } = [];

    [JsonPropertyName("timeout")]
    public uint Timeout { get; init; } = 5;

    [JsonPropertyName("connect_timeout")]
    public uint ConnectTimeout { get; init; } = 5;

    [JsonPropertyName("retry_limit")]
    public byte RetryLimit { get; init; }

    [JsonPropertyName("proxy")]
    public ProxyConfig Proxy { get; init; } = new();
}
