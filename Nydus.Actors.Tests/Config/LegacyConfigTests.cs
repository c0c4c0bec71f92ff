using Nydus.Actors.Config;
using Xunit;

namespace Nydus.Actors.Tests.Config;

/// <summary>Legacy RafsConfig JSON and its conversion to ConfigV2, field by field.</summary>
public sealed class LegacyConfigTests
{
    [Fact]
    public void Legacy_fields_map_onto_v2()
    {
        var config = NydusConfigLoader.Parse("""
            {
              "device": {
                "id": "dev-1",
                "backend": {"type": "oss", "config": {"endpoint": "e", "bucket_name": "b", "access_key_id": "k", "retry_limit": 3}},
                "external_backends": [{"patch": {"id": "x"}, "type": "oss", "config": {"bucket_name": "y"}}],
                "cache": {"type": "blobcache", "compressed": true, "validate": true, "config": {"work_dir": "/cache", "disable_indexed_map": true}}
              },
              "mode": "cached",
              "digest_validate": true,
              "iostats_files": true,
              "enable_xattr": true,
              "access_pattern": true,
              "latest_read_files": true,
              "amplify_io": 4096,
              "fs_prefetch": {"enable": true, "threads_count": 4, "merging_size": 65536, "bandwidth_rate": 1000, "prefetch_all": false, "stream_prefetch": true}
            }
            """, "legacy.json");

        Assert.Equal(2u, config.Version);
        Assert.Equal("dev-1", config.Id);
        Assert.Equal("oss", config.Backend!.Type);
        Assert.Equal("e", config.Backend.Oss!.Endpoint);
        Assert.Equal("k", config.Backend.Oss.AccessKeyId);
        Assert.Equal(3, config.Backend.Oss.RetryLimit);
        Assert.Equal(5u, config.Backend.Oss.Timeout);
        Assert.Null(config.Backend.LocalFs);
        var external = Assert.Single(config.ExternalBackends);
        Assert.Equal("x", external.Patch["id"]);
        Assert.Equal("y", external.Config["bucket_name"]);

        Assert.Equal("blobcache", config.Cache!.Type);
        Assert.True(config.Cache.Compressed);
        Assert.True(config.Cache.Validate);
        Assert.Equal("/cache", config.Cache.FileCache!.WorkDir);
        Assert.True(config.Cache.FileCache.DisableIndexedMap);
        Assert.Null(config.Cache.FsCache);

        var rafs = config.Rafs!;
        Assert.Equal("cached", rafs.Mode);
        Assert.True(rafs.Validate);
        Assert.True(rafs.IostatsFiles);
        Assert.True(rafs.EnableXattr);
        Assert.True(rafs.AccessPattern);
        Assert.True(rafs.LatestReadFiles);
        Assert.Equal(4096ul, rafs.BatchSize);
        Assert.True(rafs.Prefetch.Enable);
        Assert.Equal(4ul, rafs.Prefetch.Threads);
        Assert.Equal(65536ul, rafs.Prefetch.BatchSize);
        Assert.Equal(1000u, rafs.Prefetch.BandwidthLimit);
        Assert.False(rafs.Prefetch.PrefetchAll);
        Assert.True(rafs.Prefetch.StreamPrefetch);

        // The legacy cache cannot carry prefetch, so the enabled fs prefetch is copied to it.
        Assert.Equal(rafs.Prefetch, config.Cache.Prefetch);
        Assert.True(config.IsChunkValidationEnabled);
    }

    [Fact]
    public void Present_fs_prefetch_defaults_to_prefetch_all_true_and_legacy_keys()
    {
        var config = NydusConfigLoader.Parse(Minimal("""
            ,"fs_prefetch":{"enable":true,"threads":77}
            """), "test");

        var prefetch = config.Rafs!.Prefetch;
        Assert.True(prefetch.PrefetchAll);
        Assert.Equal(8ul, prefetch.Threads); // "threads" is the V2 key; legacy reads threads_count
        Assert.Equal(1024ul * 1024, prefetch.BatchSize);
        Assert.Equal(0u, prefetch.BandwidthLimit);
    }

    [Fact]
    public void Legacy_fs_prefetch_enable_may_be_omitted()
    {
        var prefetch = NydusConfigLoader.Parse(Minimal(""","fs_prefetch":{}"""), "test").Rafs!.Prefetch;

        Assert.False(prefetch.Enable);
        Assert.Equal(8ul, prefetch.Threads);
        Assert.True(prefetch.PrefetchAll);
    }

    [Fact]
    public void Absent_fs_prefetch_is_all_zero_and_prefetch_all_false()
    {
        var config = NydusConfigLoader.Parse(Minimal(""), "test");

        var prefetch = config.Rafs!.Prefetch;
        Assert.False(prefetch.Enable);
        Assert.Equal(0ul, prefetch.Threads);
        Assert.Equal(0ul, prefetch.BatchSize);
        Assert.False(prefetch.PrefetchAll);
        Assert.Equal(1024ul * 1024, config.Rafs.BatchSize);
        Assert.Equal("direct", config.Rafs.Mode);
    }

    [Fact]
    public void Cache_prefetch_without_enabled_fs_prefetch_is_zero_with_prefetch_all_true()
    {
        var config = NydusConfigLoader.Parse(Minimal(""","fs_prefetch":{"enable":false,"threads_count":2}"""), "test");

        var cachePrefetch = config.Cache!.Prefetch;
        Assert.False(cachePrefetch.Enable);
        Assert.Equal(0ul, cachePrefetch.Threads);
        Assert.Equal(0ul, cachePrefetch.BatchSize);
        Assert.True(cachePrefetch.PrefetchAll);
        Assert.Equal("", config.Cache.Type); // absent legacy cache = no cache
    }

    [Fact]
    public void Mode_is_required()
    {
        var error = Assert.Throws<ConfigException>(() => NydusConfigLoader.Parse(
            """{"device":{"backend":{"type":"localfs","config":{"dir":"/d"}}}}""", "test"));

        Assert.Equal(ConfigErrorKind.Malformed, error.Kind);
        Assert.StartsWith("test: invalid legacy configuration", error.Message, StringComparison.Ordinal);
        Assert.Contains("mode", error.Message);
    }

    [Fact]
    public void Http_proxy_backend_is_not_available_in_legacy_form()
    {
        var error = Assert.Throws<ConfigException>(() => NydusConfigLoader.Parse(
            """{"device":{"backend":{"type":"http-proxy","config":{"addr":"http://x"}}},"mode":"direct"}""", "test"));

        Assert.Equal(ConfigErrorKind.UnknownBackendType, error.Kind);
        Assert.StartsWith("device.backend.type: unsupported backend type 'http-proxy'", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Unknown_legacy_cache_type_is_rejected()
    {
        var error = Assert.Throws<ConfigException>(() => NydusConfigLoader.Parse(Minimal("", cache: """{"type":"ramcache"}"""), "test"));

        Assert.Equal(ConfigErrorKind.UnknownCacheType, error.Kind);
        Assert.Contains("'ramcache'", error.Message);
    }

    [Fact]
    public void Blobcache_needs_its_config_object()
    {
        var error = Assert.Throws<ConfigException>(() => NydusConfigLoader.Parse(Minimal("", cache: """{"type":"blobcache"}"""), "test"));

        Assert.Equal(ConfigErrorKind.Malformed, error.Kind);
        Assert.StartsWith("device.cache.config: must be an object", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Fscache_and_dummycache_convert()
    {
        var fscache = NydusConfigLoader.Parse(Minimal("", cache: """{"type":"fscache","config":{"work_dir":"/fs"}}"""), "test").Cache!;
        Assert.Equal("/fs", fscache.FsCache!.WorkDir);

        var dummy = NydusConfigLoader.Parse(Minimal("", cache: """{"type":"dummycache","config":{"work_dir":"/ignored"}}"""), "test").Cache!;
        Assert.Null(dummy.FileCache);
        Assert.Null(dummy.FsCache);
    }

    [Fact]
    public void Converted_config_is_validated()
    {
        var error = Assert.Throws<ConfigException>(() => NydusConfigLoader.Parse(
            """{"device":{"backend":{"type":"localfs","config":{}}},"mode":"direct"}""", "legacy.json"));

        Assert.Equal(ConfigErrorKind.InvalidBackend, error.Kind);
        Assert.Equal("backend.localfs: either blob_file or dir must be set (in legacy.json)", error.Message);

        var badMode = Assert.Throws<ConfigException>(() => NydusConfigLoader.Parse(
            """{"device":{"backend":{"type":"localfs","config":{"dir":"/d"}}},"mode":"fast"}""", "test"));
        Assert.Equal(ConfigErrorKind.InvalidRafs, badMode.Kind);
    }

    [Fact]
    public void Localfs_dir_synthesis_yields_localfs_blobcache_direct()
    {
        const string directory = "/var/lib/nydus \"blobs\"";
        var text = NydusConfigLoader.CreateLocalFsDirConfigText(directory);

        var config = NydusConfigLoader.Parse(text, "--localfs-dir");

        Assert.Equal("localfs", config.Backend!.Type);
        Assert.Equal(directory, config.Backend.LocalFs!.Dir);
        Assert.Equal("blobcache", config.Cache!.Type);
        Assert.Equal(directory, config.Cache.FileCache!.WorkDir);
        Assert.Equal("direct", config.Rafs!.Mode);
        Assert.False(config.Rafs.Validate);
        Assert.False(config.Rafs.IostatsFiles);
        Assert.False(config.Rafs.Prefetch.Enable);
    }

    private static string Minimal(string rest, string? cache = null)
    {
        var cacheMember = cache is null ? "" : $",\"cache\":{cache}";
        return $$$"""{"device":{"backend":{"type":"localfs","config":{"dir":"/d"}}{{{cacheMember}}}},"mode":"direct"{{{rest}}}}""";
    }
}
