using System.Text.Json.Serialization;

namespace Nydus.Actors.Config;

/// <summary><c>backend.registry</c>: an OCI distribution registry; <c>host</c> and <c>repo</c> keys are required.</summary>
public sealed record RegistryConfig
{
    [JsonPropertyName("scheme")]
    public string Scheme { get; init; } = "https";

    [JsonPropertyName("host"), JsonRequired]
    public string Host { get; init; } = "";

    /// <summary>Image name, e.g. <c>library/ubuntu</c>.</summary>
    [JsonPropertyName("repo"), JsonRequired]
    public string Repo { get; init; } = "";

    /// <summary>Secret: base64 of <c>user:password</c>, traded for a bearer token. Overridden by <c>IMAGE_PULL_AUTH</c>.</summary>
    [JsonPropertyName("auth")]
    public string? Auth { get; init; }

    /// <summary>Skip TLS verification; also allows falling back from HTTPS to HTTP on TLS errors.</summary>
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

    /// <summary>Secret: a bearer token sent as is.</summary>
    [JsonPropertyName("registry_token")]
    public string? RegistryToken { get; init; }

    /// <summary>Scheme for blob URLs when a P2P layer needs another one than the registry's.</summary>
    [JsonPropertyName("blob_url_scheme")]
    public string BlobUrlScheme { get; init; } = "";

    /// <summary>Fetch blobs from this host instead of <see cref="Host"/>.</summary>
    [JsonPropertyName("blob_redirected_host")]
    public string BlobRedirectedHost { get; init; } = "";

    [JsonPropertyName("proxy")]
    public ProxyConfig Proxy { get; init; } = new();

    /// <summary>Registry mirrors tried in order before the registry (see <see cref="MirrorConfig"/>).</summary>
    [JsonPropertyName("mirrors")]
    public IReadOnlyList<MirrorConfig> Mirrors { get; init; } = [];
}
