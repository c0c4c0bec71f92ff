using System.Text.Json.Serialization;

namespace Nydus.Actors.Config;

/// <summary>
/// <c>backend</c>: the <see cref="Type"/> names which of the sibling sections is used; the others may be present
/// and are ignored (upstream's sample TOML carries several).
/// </summary>
public sealed record BackendConfigV2
{
    public const string LocalFsType = "localfs";
    public const string LocalDiskType = "localdisk";
    public const string OssType = "oss";
    public const string S3Type = "s3";
    public const string RegistryType = "registry";
    public const string HttpProxyType = "http-proxy";

    [JsonPropertyName("type"), JsonRequired]
    public string Type { get; init; } = "";

    [JsonPropertyName("localdisk")]
    public LocalDiskConfig? LocalDisk { get; init; }

    [JsonPropertyName("localfs")]
    public LocalFsConfig? LocalFs { get; init; }

    [JsonPropertyName("oss")]
    public OssConfig? Oss { get; init; }

    [JsonPropertyName("s3")]
    public S3Config? S3 { get; init; }

    [JsonPropertyName("registry")]
    public RegistryConfig? Registry { get; init; }

    [JsonPropertyName("http-proxy")]
    public HttpProxyConfig? HttpProxy { get; init; }
}
