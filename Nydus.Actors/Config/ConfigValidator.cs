namespace Nydus.Actors.Config;

/// <summary>
/// Upstream's <c>ConfigV2::validate</c> and the section validators it calls, in the same order, but failing with a
/// message that names the field instead of a bare <c>false</c>.
/// </summary>
internal static class ConfigValidator
{
    public static void Validate(ConfigV2 config, string sourceName)
    {
        if (config.Version != ConfigV2.CurrentVersion)
        {
            Fail(ConfigErrorKind.InvalidVersion, $"version: must be {ConfigV2.CurrentVersion}, found {config.Version}", sourceName);
        }

        if (config.Backend is not null)
        {
            ValidateBackend(config.Backend, sourceName);
        }

        if (config.Cache is not null)
        {
            ValidateCache(config.Cache, sourceName);
        }

        if (config.Rafs is not null)
        {
            ValidateRafs(config.Rafs, sourceName);
        }
    }

    private static void ValidateBackend(BackendConfigV2 backend, string sourceName)
    {
        switch (backend.Type)
        {
            case BackendConfigV2.LocalDiskType:
                var localDisk = RequireSection(backend.LocalDisk, backend.Type, sourceName);
                RequireValue(localDisk.DevicePath, "backend.localdisk.device_path", sourceName);
                break;

            case BackendConfigV2.LocalFsType:
                var localFs = RequireSection(backend.LocalFs, backend.Type, sourceName);
                if (localFs.BlobFile.Length == 0 && localFs.Dir.Length == 0)
                {
                    Fail(ConfigErrorKind.InvalidBackend, "backend.localfs: either blob_file or dir must be set", sourceName);
                }

                break;

            case BackendConfigV2.OssType:
                var oss = RequireSection(backend.Oss, backend.Type, sourceName);
                RequireValue(oss.Endpoint, "backend.oss.endpoint", sourceName);
                RequireValue(oss.BucketName, "backend.oss.bucket_name", sourceName);
                break;

            case BackendConfigV2.S3Type:
                // An empty endpoint is allowed: the S3 client then uses the AWS endpoint of the region.
                var s3 = RequireSection(backend.S3, backend.Type, sourceName);
                RequireValue(s3.Region, "backend.s3.region", sourceName);
                RequireValue(s3.BucketName, "backend.s3.bucket_name", sourceName);
                break;

            case BackendConfigV2.RegistryType:
                var registry = RequireSection(backend.Registry, backend.Type, sourceName);
                RequireValue(registry.Host, "backend.registry.host", sourceName);
                RequireValue(registry.Repo, "backend.registry.repo", sourceName);
                ValidateRegistryRoutes(registry, sourceName);
                break;

            case BackendConfigV2.HttpProxyType:
                var httpProxy = RequireSection(backend.HttpProxy, backend.Type, sourceName);
                if (!IsValidHttpProxyAddress(httpProxy.Addr))
                {
                    Fail(
                        ConfigErrorKind.InvalidBackend,
                        $"backend.http-proxy.addr: must be an http:// or https:// URL or the absolute path of an existing Unix socket, found '{httpProxy.Addr}'",
                        sourceName);
                }

                break;

            default:
                Fail(
                    ConfigErrorKind.UnknownBackendType,
                    $"backend.type: unknown backend type '{backend.Type}' (expected localfs, localdisk, oss, s3, registry or http-proxy)",
                    sourceName);
                break;
        }
    }

    /// <summary>
    /// What upstream's connection code would only find out at the first request, or not serve at all here: proxy
    /// and ping URLs must be http(s) URLs, every mirror needs a host, and the Dragonfly scheduler (upstream's SDK
    /// routing) is refused by name rather than ignored.
    /// </summary>
    private static void ValidateRegistryRoutes(RegistryConfig registry, string sourceName)
    {
        RequireHttpUrlOrEmpty(registry.Proxy.Url, "backend.registry.proxy.url", sourceName);
        RequireHttpUrlOrEmpty(registry.Proxy.PingUrl, "backend.registry.proxy.ping_url", sourceName);
        if (registry.Proxy.DragonflySchedulerEndpoint.Length > 0)
        {
            Fail(ConfigErrorKind.Unsupported,
                "backend.registry.proxy.dragonfly_scheduler_endpoint: routing through the Dragonfly scheduler is not supported by this build (use proxy.url)",
                sourceName);
        }

        for (int i = 0; i < registry.Mirrors.Count; i++)
        {
            RequireValue(registry.Mirrors[i].Host, $"backend.registry.mirrors[{i}].host", sourceName);
            RequireHttpUrlOrEmpty(registry.Mirrors[i].PingUrl, $"backend.registry.mirrors[{i}].ping_url", sourceName);
        }
    }

    private static void RequireHttpUrlOrEmpty(string value, string field, string sourceName)
    {
        if (value.Length > 0 && !(Uri.TryCreate(value, UriKind.Absolute, out Uri? uri) && uri.Scheme is "http" or "https"))
        {
            Fail(ConfigErrorKind.InvalidBackend, $"{field}: must be an http:// or https:// URL, found '{value}'", sourceName);
        }
    }

    /// <summary>
    /// Upstream accepts any existing absolute path as a socket; whether it really is a socket shows on connect.
    /// </summary>
    private static bool IsValidHttpProxyAddress(string address) =>
        address.StartsWith("http://", StringComparison.Ordinal)
        || address.StartsWith("https://", StringComparison.Ordinal)
        || (address.StartsWith('/') && Path.Exists(address));

    private static void ValidateCache(CacheConfigV2 cache, string sourceName)
    {
        switch (cache.Type)
        {
            case CacheConfigV2.BlobCacheType:
            case CacheConfigV2.FileCacheType:
                if (cache.FileCache is null)
                {
                    Fail(ConfigErrorKind.InvalidCache, $"cache.filecache: section is required by cache type '{cache.Type}'", sourceName);
                }

                if (cache.FileCache.WorkDir.Length == 0)
                {
                    Fail(ConfigErrorKind.InvalidCache, "cache.filecache.work_dir: must not be empty", sourceName);
                }

                if (cache.FileCache.EnableEncryption)
                {
                    Fail(ConfigErrorKind.Unsupported,
                        "cache.filecache.enable_encryption: encrypted cache files are not supported by this build", sourceName);
                }

                break;

            case CacheConfigV2.FsCacheType:
                if (cache.FsCache is null)
                {
                    Fail(ConfigErrorKind.InvalidCache, "cache.fscache: section is required by cache type 'fscache'", sourceName);
                }

                if (cache.FsCache.WorkDir.Length == 0)
                {
                    Fail(ConfigErrorKind.InvalidCache, "cache.fscache.work_dir: must not be empty", sourceName);
                }

                break;

            case "":
            case CacheConfigV2.DummyCacheType:
                break;

            default:
                Fail(
                    ConfigErrorKind.UnknownCacheType,
                    $"cache.type: unknown cache type '{cache.Type}' (expected blobcache, filecache, fscache, dummycache or empty)",
                    sourceName);
                break;
        }

        ValidatePrefetch(cache.Prefetch, "cache.prefetch", sourceName);
    }

    private static void ValidateRafs(RafsConfigV2 rafs, string sourceName)
    {
        if (rafs.Mode is not (RafsConfigV2.DirectMode or RafsConfigV2.CachedMode))
        {
            Fail(ConfigErrorKind.InvalidRafs, $"rafs.mode: must be 'direct' or 'cached', found '{rafs.Mode}'", sourceName);
        }

        if (rafs.BatchSize > RafsConfigV2.MaxBatchSize)
        {
            Fail(
                ConfigErrorKind.InvalidRafs,
                $"rafs.batch_size: must not exceed {RafsConfigV2.MaxBatchSize} (0x{RafsConfigV2.MaxBatchSize:x}), found {rafs.BatchSize}",
                sourceName);
        }

        ValidatePrefetch(rafs.Prefetch, "rafs.prefetch", sourceName);
    }

    /// <summary>Limits apply only to an enabled table: a disabled one may carry anything, including zeros.</summary>
    private static void ValidatePrefetch(PrefetchConfigV2 prefetch, string field, string sourceName)
    {
        if (!prefetch.Enable)
        {
            return;
        }

        if (prefetch.BatchSize > PrefetchConfigV2.MaxBatchSize)
        {
            Fail(
                ConfigErrorKind.InvalidPrefetch,
                $"{field}.batch_size: must not exceed {PrefetchConfigV2.MaxBatchSize} (0x{PrefetchConfigV2.MaxBatchSize:x}) when prefetch is enabled, found {prefetch.BatchSize}",
                sourceName);
        }

        if (prefetch.Threads is 0 or > PrefetchConfigV2.MaxThreads)
        {
            Fail(
                ConfigErrorKind.InvalidPrefetch,
                $"{field}.threads: must be between 1 and {PrefetchConfigV2.MaxThreads} when prefetch is enabled, found {prefetch.Threads}",
                sourceName);
        }
    }

    private static T RequireSection<T>(T? section, string backendType, string sourceName)
        where T : class
    {
        if (section is null)
        {
            Fail(ConfigErrorKind.InvalidBackend, $"backend.{backendType}: section is required by backend type '{backendType}'", sourceName);
        }

        return section;
    }

    private static void RequireValue(string value, string field, string sourceName)
    {
        if (value.Length == 0)
        {
            Fail(ConfigErrorKind.InvalidBackend, $"{field}: must not be empty", sourceName);
        }
    }

    [System.Diagnostics.CodeAnalysis.DoesNotReturn]
    private static void Fail(ConfigErrorKind kind, string message, string sourceName) =>
        throw new ConfigException(kind, $"{message} (in {sourceName})");
}
