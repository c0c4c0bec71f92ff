using System.Text.Json.Serialization;

namespace Nydus.Actors.Config;

/// <summary><c>backend.oss</c>: Alibaba Cloud OSS. <c>endpoint</c> and <c>bucket_name</c> keys are required, even if empty.</summary>
public sealed record OssConfig
{
    [JsonPropertyName("scheme")]
    public string Scheme { get; init; } = "https";

    [JsonPropertyName("endpoint"), JsonRequired]
    public string Endpoint { get; init; } = "";

    [JsonPropertyName("bucket_name"), JsonRequired]
    public string BucketName { get; init; } = "";

    /// <summary>Prepended to every object key, e.g. <c>nydus/</c> turns <c>sha256:x</c> into <c>nydus/sha256:x</c>.</summary>
    [JsonPropertyName("object_prefix")]
    public string ObjectPrefix { get; init; } = "";

    /// <summary>Secret: blanked by <see cref="ConfigV2.WithoutSecrets"/>.</summary>
    [JsonPropertyName("access_key_id")]
    public string AccessKeyId { get; init; } = "";

    /// <summary>Secret: blanked by <see cref="ConfigV2.WithoutSecrets"/>.</summary>
    [JsonPropertyName("access_key_secret")]
    public string AccessKeySecret { get; init; } = "";

    [JsonPropertyName("skip_verify")]
    public bool SkipVerify { get; init; }

    /// <summary>PEM files trusted in addition to the system store.</summary>
    [JsonPropertyName("ca_cert_files")]
    public IReadOnlyList<string> CaCertFiles { get; init; } = [];

    /// <summary>Request timeout in seconds.</summary>
    [JsonPropertyName("timeout")]
    public uint Timeout { get; init; } = 5;

    /// <summary>Connect timeout in seconds.</summary>
    [JsonPropertyName("connect_timeout")]
    public uint ConnectTimeout { get; init; } = 5;

    [JsonPropertyName("retry_limit")]
    public byte RetryLimit { get; init; }

    [JsonPropertyName("proxy")]
    public ProxyConfig Proxy { get; init; } = new();
}
