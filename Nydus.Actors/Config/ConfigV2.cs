using System.Text.Json.Serialization;

namespace Nydus.Actors.Config;

/// <summary>
/// Upstream's configuration format version 2 (<c>api/src/config.rs</c> <c>ConfigV2</c>): what a mount needs to find
/// its blobs (backend), keep them locally (cache) and serve the filesystem (rafs). Property names and defaults match
/// upstream's serde attributes exactly so documents written for nydusd parse here unchanged.
/// </summary>
/// <remarks>
/// Only <see cref="Version"/> is required. Sections that are absent stay <c>null</c>, as upstream's <c>Option</c>s do;
/// whether a mount can live without one is decided by the mount, not by the parser.
/// </remarks>
public sealed record ConfigV2
{
    /// <summary>The only format version this type describes.</summary>
    public const uint CurrentVersion = 2;

    [JsonPropertyName("version"), JsonRequired]
    public uint Version { get; init; } = CurrentVersion;

    /// <summary>Instance identifier; the blob-cache metrics are keyed by it.</summary>
    [JsonPropertyName("id")]
    public string Id { get; init; } = "";

    [JsonPropertyName("backend")]
    public BackendConfigV2? Backend { get; init; }

    [JsonPropertyName("external_backends")]
    public IReadOnlyList<ExternalBackendConfig> ExternalBackends { get; init; } = [];

    [JsonPropertyName("cache")]
    public CacheConfigV2? Cache { get; init; }

    [JsonPropertyName("rafs")]
    public RafsConfigV2? Rafs { get; init; }

    /// <summary>When present, the mount gets a writable upper layer (userspace OverlayFS over RAFS).</summary>
    [JsonPropertyName("overlay")]
    public OverlayConfig? Overlay { get; init; }

    /// <summary>
    /// A copy fit for API output: OSS, S3 and registry credentials blanked. Upstream forgets the S3 keys
    /// (<c>clone_without_secrets</c>); we do not.
    /// </summary>
    public ConfigV2 WithoutSecrets()
    {
        if (Backend is null)
        {
            return this;
        }

        return this with
        {
            Backend = Backend with
            {
                Oss = Backend.Oss is null ? null : Backend.Oss with { AccessKeyId = "", AccessKeySecret = "" },
                S3 = Backend.S3 is null ? null : Backend.S3 with { AccessKeyId = "", AccessKeySecret = "" },
                Registry = Backend.Registry is null ? null : Backend.Registry with { Auth = null, RegistryToken = null },
            },
        };
    }

    /// <summary>
    /// Upstream's <c>update_registry_auth_info</c>: the <c>IMAGE_PULL_AUTH</c> override replaces
    /// <c>backend.registry.auth</c>, but only when a registry section exists (whatever the backend type).
    /// </summary>
    public ConfigV2 WithRegistryAuth(string? auth)
    {
        if (auth is null || Backend?.Registry is null)
        {
            return this;
        }

        return this with { Backend = Backend with { Registry = Backend.Registry with { Auth = auth } } };
    }

    /// <summary>Whether chunk digests are checked: cache.validate or rafs.validate (upstream <c>is_chunk_validation_enabled</c>).</summary>
    [JsonIgnore]
    public bool IsChunkValidationEnabled => (Cache?.Validate ?? false) || (Rafs?.Validate ?? false);
}
