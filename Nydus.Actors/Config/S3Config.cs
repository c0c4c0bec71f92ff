using System.Text.Json.Serialization;

namespace Nydus.Actors.Config;

/// <summary>
/// <c>backend.s3</c>: any S3-compatible store. <c>endpoint</c>, <c>region</c> and <c>bucket_name</c> keys are required;
/// validity needs a non-empty region and bucket (an empty endpoint means AWS's default one).
/// </summary>
public sealed record S3Config
{
    [JsonPropertyName("scheme")]
    public string Scheme { get; init; } = "https";

    [JsonPropertyName("endpoint"), JsonRequired]
    public string Endpoint { get; init; } = "";

    [JsonPropertyName("region"), JsonRequired]
    public string Region { get; init; } = "";

    [JsonPropertyName("bucket_name"), JsonRequired]
    public string BucketName { get; init; } = "";

    [JsonPropertyName("object_prefix")]
    public string ObjectPrefix { get; init; } = "";

    /// <summary>Secret: blanked by <see cref="ConfigV2.WithoutSecrets"/> (upstream leaves it in).</summary>
    [JsonPropertyName("access_key_id")]
    public string AccessKeyId { get; init; } = "";

    /// <summary>Secret: blanked by <see cref="ConfigV2.WithoutSecrets"/> (upstream leaves it in).</summary>
    [JsonPropertyName("access_key_secret")]
    public string AccessKeySecret { get; init; } = "";

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
