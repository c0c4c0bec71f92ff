using Nydus.Actors.Config;
using Xunit;

namespace Nydus.Actors.Tests.Config;

/// <summary>Defaults of every section, including upstream's absent-table versus missing-key asymmetries.</summary>
public sealed class ConfigDefaultsTests
{
    private static ConfigV2 Parse(string json) => NydusConfigLoader.Parse(json, "test");

    [Fact]
    public void Version_only_document_has_no_sections()
    {
        var config = Parse("""{"version":2}""");

        Assert.Equal(2u, config.Version);
        Assert.Equal("", config.Id);
        Assert.Null(config.Backend);
        Assert.Null(config.Cache);
        Assert.Null(config.Rafs);
        Assert.Null(config.Overlay);
        Assert.Empty(config.ExternalBackends);
    }

    [Fact]
    public void Oss_section_fills_every_missing_key_with_upstream_default()
    {
        var config = Parse("""{"version":2,"backend":{"type":"oss","oss":{"endpoint":"e","bucket_name":"b"}}}""");

        var oss = config.Backend!.Oss!;
        Assert.Equal("https", oss.Scheme);
        Assert.Equal("", oss.ObjectPrefix);
        Assert.Equal("", oss.AccessKeyId);
        Assert.Equal("", oss.AccessKeySecret);
        Assert.False(oss.SkipVerify);
        Assert.Empty(oss.CaCertFiles);
        Assert.Equal(5u, oss.Timeout);
        Assert.Equal(5u, oss.ConnectTimeout);
        Assert.Equal(0, oss.RetryLimit);
        AssertDefaultProxy(oss.Proxy);
    }

    [Fact]
    public void Registry_and_http_proxy_sections_have_upstream_defaults()
    {
        var registry = Parse("""{"version":2,"backend":{"type":"registry","registry":{"host":"h","repo":"r"}}}""").Backend!.Registry!;
        Assert.Equal("https", registry.Scheme);
        Assert.Null(registry.Auth);
        Assert.Null(registry.RegistryToken);
        Assert.Equal("", registry.BlobUrlScheme);
        Assert.Equal("", registry.BlobRedirectedHost);
        Assert.Equal(5u, registry.Timeout);
        Assert.Equal(5u, registry.ConnectTimeout);
        Assert.Equal(0, registry.RetryLimit);
        AssertDefaultProxy(registry.Proxy);

        var proxy = Parse("""{"version":2,"backend":{"type":"http-proxy","http-proxy":{"addr":"http://127.0.0.1:1"}}}""").Backend!.HttpProxy!;
        Assert.Equal("", proxy.Path);
        Assert.Equal(5u, proxy.Timeout);
        AssertDefaultProxy(proxy.Proxy);
    }

    [Fact]
    public void Partial_proxy_table_keeps_per_key_defaults()
    {
        var proxy = Parse("""{"version":2,"backend":{"type":"registry","registry":{"host":"h","repo":"r","proxy":{"url":"http://p"}}}}""")
            .Backend!.Registry!.Proxy;

        Assert.Equal("http://p", proxy.Url);
        Assert.True(proxy.Fallback);
        Assert.Equal(5ul, proxy.CheckInterval);
        Assert.Equal(300ul, proxy.CheckPauseElapsed);
    }

    [Fact]
    public void Absent_prefetch_tables_are_all_zero()
    {
        var config = Parse("""{"version":2,"cache":{"type":"blobcache","filecache":{}},"rafs":{}}""");

        foreach (var prefetch in new[] { config.Cache!.Prefetch, config.Rafs!.Prefetch })
        {
            Assert.False(prefetch.Enable);
            Assert.Equal(0ul, prefetch.Threads);
            Assert.Equal(0ul, prefetch.BatchSize);
            Assert.Equal(0u, prefetch.BandwidthLimit);
            Assert.False(prefetch.PrefetchAll);
            Assert.False(prefetch.StreamPrefetch);
        }
    }

    [Fact]
    public void Present_prefetch_table_fills_missing_keys_and_prefetch_all_is_false()
    {
        var config = Parse("""{"version":2,"rafs":{"prefetch":{"enable":true}},"cache":{"prefetch":{"enable":false}}}""");

        foreach (var prefetch in new[] { config.Cache!.Prefetch, config.Rafs!.Prefetch })
        {
            Assert.Equal(8ul, prefetch.Threads);
            Assert.Equal(1024ul * 1024, prefetch.BatchSize);
            Assert.Equal(0u, prefetch.BandwidthLimit);
            Assert.False(prefetch.PrefetchAll);
        }

        Assert.True(config.Rafs!.Prefetch.Enable);
    }

    [Fact]
    public void V2_prefetch_threads_key_is_threads_not_threads_count()
    {
        var config = Parse("""{"version":2,"rafs":{"prefetch":{"enable":true,"threads":3,"threads_count":99}}}""");

        Assert.Equal(3ul, config.Rafs!.Prefetch.Threads);
    }

    [Fact]
    public void Prefetch_table_without_enable_is_rejected()
    {
        var error = Assert.Throws<ConfigException>(() => Parse("""{"version":2,"rafs":{"prefetch":{"threads":3}}}"""));

        Assert.Equal(ConfigErrorKind.Malformed, error.Kind);
        Assert.Contains("enable", error.Message);
    }

    [Fact]
    public void Rafs_and_cache_sections_have_upstream_defaults()
    {
        var config = Parse("""{"version":2,"cache":{"type":"filecache","filecache":{},"fscache":{}},"rafs":{}}""");

        Assert.Equal("direct", config.Rafs!.Mode);
        Assert.Equal(1024ul * 1024, config.Rafs.BatchSize);
        Assert.False(config.Rafs.Validate);
        Assert.False(config.Rafs.EnableXattr);
        Assert.False(config.Rafs.IostatsFiles);
        Assert.False(config.Rafs.AccessPattern);
        Assert.False(config.Rafs.LatestReadFiles);
        Assert.Equal(".", config.Cache!.FileCache!.WorkDir);
        Assert.False(config.Cache.FileCache.DisableIndexedMap);
        Assert.Equal("", config.Cache.FileCache.EncryptionKey);
        Assert.Equal(".", config.Cache.FsCache!.WorkDir);
        Assert.False(config.Cache.Compressed);
        Assert.False(config.Cache.Validate);
        Assert.True(config.Cache.IsFileCache);
    }

    [Fact]
    public void Empty_cache_type_is_no_cache()
    {
        var cache = Parse("""{"version":2,"cache":{}}""").Cache!;

        Assert.Equal("", cache.Type);
        Assert.False(cache.IsFileCache);
        Assert.False(cache.IsFsCache);
    }

    [Fact]
    public void Unknown_keys_are_ignored_at_every_level()
    {
        var config = Parse("""
            {"version":2,"colour":"blue","backend":{"type":"localfs","readahead":true,"localfs":{"dir":"/d","x":1}},
             "rafs":{"mode":"cached","future":{"a":[1,2]}}}
            """);

        Assert.Equal("/d", config.Backend!.LocalFs!.Dir);
        Assert.Equal("cached", config.Rafs!.Mode);
    }

    private static void AssertDefaultProxy(ProxyConfig proxy)
    {
        Assert.Equal("", proxy.Url);
        Assert.Equal("", proxy.PingUrl);
        Assert.True(proxy.Fallback);
        Assert.Equal(5ul, proxy.CheckInterval);
        Assert.False(proxy.UseHttp);
        Assert.Equal(300ul, proxy.CheckPauseElapsed);
        Assert.Equal("", proxy.DragonflySchedulerEndpoint);
    }
}
