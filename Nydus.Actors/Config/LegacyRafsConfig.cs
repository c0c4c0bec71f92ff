using System.Text.Json;
using System.Text.Json.Serialization;

namespace Nydus.Actors.Config;

/// <summary>
/// Upstream's pre-V2 JSON (<c>RafsConfig</c> with its <c>FactoryConfig</c> device), still what nydus-snapshotter writes.
/// Read only to be converted by <see cref="ToV2"/>; never written.
/// </summary>
internal sealed record LegacyRafsConfig
{
    [JsonPropertyName("device"), JsonRequired]
    public LegacyFactoryConfig Device { get; init; } = new();

    [JsonPropertyName("mode"), JsonRequired]
    public string Mode { get; init; } = "";

    [JsonPropertyName("digest_validate")]
    public bool DigestValidate { get; init; }

    [JsonPropertyName("iostats_files")]
    public bool IostatsFiles { get; init; }

    /// <summary>Absent: all zeros and prefetch_all false; present: the per-key defaults of <see cref="LegacyFsPrefetchControl"/>.</summary>
    [JsonPropertyName("fs_prefetch")]
    public LegacyFsPrefetchControl FsPrefetch { get; init; } = LegacyFsPrefetchControl.Absent;

    [JsonPropertyName("enable_xattr")]
    public bool EnableXattr { get; init; }

    [JsonPropertyName("access_pattern")]
    public bool AccessPattern { get; init; }

    [JsonPropertyName("latest_read_files")]
    public bool LatestReadFiles { get; init; }

    /// <summary>Becomes <c>rafs.batch_size</c>.</summary>
    [JsonPropertyName("amplify_io")]
    public ulong AmplifyIo { get; init; } = 1024 * 1024;

    /// <summary>Upstream's <c>TryFrom&lt;RafsConfig&gt; for ConfigV2</c>.</summary>
    public ConfigV2 ToV2()
    {
        var backend = Device.Backend.ToV2();
        var cache = Device.Cache.ToV2();
        var rafsPrefetch = FsPrefetch.ToV2();
        var rafs = new RafsConfigV2
        {
            Mode = Mode,
            BatchSize = AmplifyIo,
            Validate = DigestValidate,
            EnableXattr = EnableXattr,
            IostatsFiles = IostatsFiles,
            AccessPattern = AccessPattern,
            LatestReadFiles = LatestReadFiles,
            Prefetch = rafsPrefetch,
        };

        // The legacy cache section has no prefetch of its own, so an enabled filesystem prefetch also drives the
        // blob-level one.
        if (!cache.Prefetch.Enable && rafsPrefetch.Enable)
        {
            cache = cache with { Prefetch = rafsPrefetch };
        }

        return new ConfigV2
        {
            Version = ConfigV2.CurrentVersion,
            Id = Device.Id,
            Backend = backend,
            ExternalBackends = Device.ExternalBackends,
            Cache = cache,
            Rafs = rafs,
        };
    }
}

internal sealed record LegacyFactoryConfig
{
    [JsonPropertyName("id")]
    public string Id { get; init; } = "";

    [JsonPropertyName("backend"), JsonRequired]
    public LegacyBackendConfig Backend { get; init; } = new();

    [JsonPropertyName("external_backends")]
    public IReadOnlyList<ExternalBackendConfig> ExternalBackends { get; init; } = [];

    [JsonPropertyName("cache")]
    public LegacyCacheConfig Cache { get; init; } = new();
}

/// <summary><c>device.backend</c>: the type plus its section under the generic key <c>config</c>. No http-proxy here.</summary>
internal sealed record LegacyBackendConfig
{
    [JsonPropertyName("type"), JsonRequired]
    public string Type { get; init; } = "";

    [JsonPropertyName("config"), JsonRequired]
    public JsonElement Config { get; init; }

    public BackendConfigV2 ToV2() => Type switch
    {
        BackendConfigV2.LocalDiskType => new BackendConfigV2 { Type = Type, LocalDisk = ReadSection<LocalDiskConfig>() },
        BackendConfigV2.LocalFsType => new BackendConfigV2 { Type = Type, LocalFs = ReadSection<LocalFsConfig>() },
        BackendConfigV2.OssType => new BackendConfigV2 { Type = Type, Oss = ReadSection<OssConfig>() },
        BackendConfigV2.S3Type => new BackendConfigV2 { Type = Type, S3 = ReadSection<S3Config>() },
        BackendConfigV2.RegistryType => new BackendConfigV2 { Type = Type, Registry = ReadSection<RegistryConfig>() },
        _ => throw new ConfigException(
            ConfigErrorKind.UnknownBackendType,
            $"device.backend.type: unsupported backend type '{Type}' in a legacy configuration (expected localfs, localdisk, oss, s3 or registry)"),
    };

    private T ReadSection<T>()
        where T : class => LegacySection.Read<T>(Config, "device.backend.config");
}

/// <summary><c>device.cache</c>: the type plus its section under the generic key <c>config</c>.</summary>
internal sealed record LegacyCacheConfig
{
    [JsonPropertyName("type")]
    public string Type { get; init; } = "";

    [JsonPropertyName("compressed")]
    public bool Compressed { get; init; }

    [JsonPropertyName("config")]
    public JsonElement Config { get; init; }

    [JsonPropertyName("validate")]
    public bool Validate { get; init; }

    /// <summary>
    /// Upstream's <c>TryFrom&lt;&amp;CacheConfig&gt;</c>. Its prefetch comes from a zeroed <c>BlobPrefetchConfig</c>,
    /// whose conversion sets prefetch_all to true: a quirk kept so converted configs compare equal to upstream's.
    /// </summary>
    public CacheConfigV2 ToV2()
    {
        var cache = new CacheConfigV2
        {
            Type = Type,
            Compressed = Compressed,
            Validate = Validate,
            Prefetch = PrefetchConfigV2.Absent with { PrefetchAll = true },
        };

        return Type switch
        {
            CacheConfigV2.BlobCacheType or CacheConfigV2.FileCacheType =>
                cache with { FileCache = LegacySection.Read<FileCacheConfig>(Config, "device.cache.config") },
            CacheConfigV2.FsCacheType => cache with { FsCache = LegacySection.Read<FsCacheConfig>(Config, "device.cache.config") },
            "" or CacheConfigV2.DummyCacheType => cache,
            _ => throw new ConfigException(
                ConfigErrorKind.UnknownCacheType,
                $"device.cache.type: unsupported cache type '{Type}' (expected blobcache, filecache, fscache, dummycache or empty)"),
        };
    }
}

/// <summary><c>fs_prefetch</c>, with the legacy key names and defaults (prefetch_all true when the table is present).</summary>
internal sealed record LegacyFsPrefetchControl
{
    public static LegacyFsPrefetchControl Absent { get; } = new() { ThreadsCount = 0, MergingSize = 0, PrefetchAll = false };

    [JsonPropertyName("enable")]
    public bool Enable { get; init; }

    [JsonPropertyName("threads_count")]
    public ulong ThreadsCount { get; init; } = 8;

    [JsonPropertyName("merging_size")]
    public ulong MergingSize { get; init; } = 1024 * 1024;

    [JsonPropertyName("bandwidth_rate")]
    public uint BandwidthRate { get; init; }

    [JsonPropertyName("prefetch_all")]
    public bool PrefetchAll { get; init; } = true;

    [JsonPropertyName("stream_prefetch")]
    public bool StreamPrefetch { get; init; }

    public PrefetchConfigV2 ToV2() => new()
    {
        Enable = Enable,
        Threads = ThreadsCount,
        BatchSize = MergingSize,
        BandwidthLimit = BandwidthRate,
        PrefetchAll = PrefetchAll,
        StreamPrefetch = StreamPrefetch,
    };
}

/// <summary>Binds a legacy <c>config</c> value to its V2 section type with the same strictness as the V2 document.</summary>
internal static class LegacySection
{
    public static T Read<T>(JsonElement element, string field)
        where T : class
    {
        if (element.ValueKind != JsonValueKind.Object)
        {
            throw new ConfigException(ConfigErrorKind.Malformed, $"{field}: must be an object, found {Describe(element.ValueKind)}");
        }

        try
        {
            return element.Deserialize<T>(ConfigJson.Options)
                ?? throw new ConfigException(ConfigErrorKind.Malformed, $"{field}: must be an object");
        }
        catch (JsonException e)
        {
            throw new ConfigException(ConfigErrorKind.Malformed, $"{field}: {JsonErrorText.Describe(e)}", e);
        }
    }

    private static string Describe(JsonValueKind kind) => kind == JsonValueKind.Undefined ? "nothing (key missing)" : kind.ToString().ToLowerInvariant();
}
