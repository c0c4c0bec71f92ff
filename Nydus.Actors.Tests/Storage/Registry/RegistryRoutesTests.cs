using System.Diagnostics;
using Nydus.Actors.Config;
using Nydus.Actors.Storage;
using Nydus.Actors.Storage.Backends;
using Nydus.Actors.Tests.Support;
using Xunit;

namespace Nydus.Actors.Tests.Storage.Registry;

/// <summary>
/// The registry fields nydus-snapshotter writes, from config JSON to real requests against docker-registry: a
/// forward proxy that goes down and comes back (fallback within check_interval), a mirror with headers, TLS with
/// a self-signed certificate trusted through ca_cert_files, and fields this build refuses by name.
/// </summary>
public sealed class RegistryRoutesTests
{
    private const string Repo = "nydus/routes";
    private static readonly TimeSpan WaitLimit = TimeSpan.FromSeconds(30);

    private static byte[] Blob()
    {
        var content = new byte[256 * 1024];
        new Random(5).NextBytes(content);
        return content;
    }

    /// <summary>The backend as a mount would build it: from upstream's JSON, parsed and validated by the loader.</summary>
    private static RegistryBackend FromConfig(RegistryServer registry, string extraFields, string? scheme = null)
    {
        string json = $$"""
            {
              "version": 2,
              "backend": { "type": "registry", "registry": { "scheme": "{{scheme ?? registry.Scheme}}", "host": "{{registry.Host}}", "repo": "{{Repo}}",
                           "timeout": 5, "connect_timeout": 2, "retry_limit": 0 {{extraFields}} } },
              "cache": { "type": "" },
              "rafs": { "mode": "direct" }
            }
            """;
        ConfigV2 config = NydusConfigLoader.Parse(json, "test config");
        return new RegistryBackend(RegistryBackendSettings.FromConfig(config.Backend!.Registry!));
    }

    private static void AssertReads(RegistryBackend backend, string blobId, byte[] content, int offset)
    {
        var part = new byte[4096];
        backend.Read(blobId, offset, part);
        Assert.True(content.AsSpan(offset, part.Length).SequenceEqual(part), $"bytes at {offset}");
    }

    private static void WaitUntil(Func<bool> condition, string what)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            Assert.True(clock.Elapsed < WaitLimit, $"{what}: not within {WaitLimit.TotalSeconds} s");
            Thread.Sleep(50);
        }
    }

    [Fact]
    public void Proxy_up_then_down_falls_back_to_the_registry_and_is_used_again_when_back()
    {
        using RegistryServer registry = RegistryServer.Start();
        byte[] content = Blob();
        string blobId = registry.Push(Repo, content);
        using var proxy = ForwardProxyServer.AsProxy();
        using RegistryBackend backend = FromConfig(registry,
            $$""", "proxy": { "url": "{{proxy.Url}}", "ping_url": "{{proxy.Url}}/ping", "fallback": true, "check_interval": 1 }""");

        // Up: requests go through the proxy.
        AssertReads(backend, blobId, content, 0);
        int throughProxy = proxy.ForwardedCount;
        Assert.True(throughProxy >= 1, "the proxy forwarded nothing");
        Assert.All(proxy.ForwardedSnapshot(), r => Assert.StartsWith($"http://{registry.Host}/v2/{Repo}/blobs/sha256:", r.Url));

        // Down: the read that meets the dead proxy goes to the registry at once, and within check_interval the
        // health check marks it unhealthy so later reads do not even try it.
        proxy.Stop();
        AssertReads(backend, blobId, content, 8192);
        WaitUntil(() => !backend.ProxyHealthy, "proxy marked unhealthy");
        for (int i = 0; i < 5; i++)
        {
            AssertReads(backend, blobId, content, 16384 + i * 4096);
        }

        Assert.Equal(throughProxy, proxy.ForwardedCount);

        // Up again: healthy within check_interval, and reads go through it again.
        proxy.Start();
        WaitUntil(() => backend.ProxyHealthy, "proxy healthy again");
        AssertReads(backend, blobId, content, 65536);
        Assert.True(proxy.ForwardedCount > throughProxy, "reads after the proxy came back did not use it");
    }

    [Fact]
    public void Proxy_down_without_fallback_fails_reads_with_a_message_naming_it()
    {
        using RegistryServer registry = RegistryServer.Start();
        byte[] content = Blob();
        string blobId = registry.Push(Repo, content);
        using var proxy = ForwardProxyServer.AsProxy();
        using RegistryBackend backend = FromConfig(registry,
            $$""", "proxy": { "url": "{{proxy.Url}}", "ping_url": "{{proxy.Url}}/ping", "fallback": false, "check_interval": 1 }""");
        AssertReads(backend, blobId, content, 0);

        proxy.Stop();
        WaitUntil(() => !backend.ProxyHealthy, "proxy marked unhealthy");
        var e = Assert.Throws<StorageException>(() => backend.Read(blobId, 4096, new byte[4096]));
        Assert.Equal(StorageErrorKind.BackendUnavailable, e.Kind);
        Assert.Contains(proxy.Url, e.Message);
    }

    [Fact]
    public void Mirror_gets_requests_with_its_headers_and_the_registry_serves_when_it_is_down()
    {
        using RegistryServer registry = RegistryServer.Start();
        byte[] content = Blob();
        string blobId = registry.Push(Repo, content);
        using var mirror = ForwardProxyServer.AsMirror(registry.BaseUrl);
        using RegistryBackend backend = FromConfig(registry,
            $$""", "mirrors": [ { "host": "{{mirror.Url}}", "headers": { "X-Dragonfly-Registry": "{{registry.BaseUrl}}" }, "failure_limit": 1, "health_check_interval": 60 } ]""");

        AssertReads(backend, blobId, content, 0);
        var forwarded = mirror.ForwardedSnapshot();
        Assert.NotEmpty(forwarded);
        Assert.All(forwarded, r => Assert.Equal(registry.BaseUrl, r.Headers["X-Dragonfly-Registry"]));
        Assert.Equal(0, backend.RegistryRequests);

        mirror.Stop();
        for (int i = 1; i <= 3; i++)
        {
            AssertReads(backend, blobId, content, i * 4096);
        }

        Assert.Equal(forwarded.Length, mirror.ForwardedCount);
        Assert.True(backend.RegistryRequests >= 3, $"the registry served {backend.RegistryRequests} requests");
    }

    [Fact]
    public void Self_signed_registry_is_trusted_through_ca_cert_files_and_refused_without()
    {
        using RegistryServer registry = RegistryServer.Start(tls: true);
        byte[] content = Blob();
        string blobId = registry.Push(Repo, content);

        using (RegistryBackend trusted = FromConfig(registry,
                   $$""", "ca_cert_files": [ {{NydusdMount.Json(registry.CertificatePath!)}} ]"""))
        {
            AssertReads(trusted, blobId, content, 4096);
        }

        using (RegistryBackend untrusted = FromConfig(registry, ""))
        {
            var e = Assert.Throws<StorageException>(() => untrusted.Read(blobId, 0, new byte[4096]));
            Assert.Equal(StorageErrorKind.BackendUnavailable, e.Kind);
        }

        using (RegistryBackend skipping = FromConfig(registry, """, "skip_verify": true"""))
        {
            AssertReads(skipping, blobId, content, 8192);
        }

        string missing = Path.Combine(Path.GetTempPath(), $"no-such-ca-{Guid.NewGuid():N}.pem");
        var refused = Assert.Throws<ConfigException>(() => FromConfig(registry,
            $$""", "ca_cert_files": [ {{NydusdMount.Json(missing)}} ]""").Dispose());
        Assert.Contains("backend.registry.ca_cert_files", refused.Message);
        Assert.Contains(missing, refused.Message);
    }

    [Fact]
    public void Skip_verify_falls_back_to_http_for_a_registry_without_tls_and_strict_config_does_not()
    {
        using RegistryServer registry = RegistryServer.Start();
        byte[] content = Blob();
        string blobId = registry.Push(Repo, content);

        using (RegistryBackend skipping = FromConfig(registry, """, "skip_verify": true""", scheme: "https"))
        {
            AssertReads(skipping, blobId, content, 0);
            AssertReads(skipping, blobId, content, 4096);
        }

        using RegistryBackend strict = FromConfig(registry, "", scheme: "https");
        var e = Assert.Throws<StorageException>(() => strict.Read(blobId, 0, new byte[4096]));
        Assert.Equal(StorageErrorKind.BackendUnavailable, e.Kind);
    }

    [Theory]
    [InlineData("""{"proxy": {"url": "http://127.0.0.1:1", "dragonfly_scheduler_endpoint": "http://127.0.0.1:2"}}""", "backend.registry.proxy.dragonfly_scheduler_endpoint")]
    [InlineData("""{"proxy": {"url": "ftp://127.0.0.1:1"}}""", "backend.registry.proxy.url")]
    [InlineData("""{"proxy": {"url": "http://127.0.0.1:1", "ping_url": "not a url"}}""", "backend.registry.proxy.ping_url")]
    [InlineData("""{"mirrors": [{"host": ""}]}""", "backend.registry.mirrors[0].host")]
    public void Registry_fields_that_cannot_be_served_are_refused_by_name(string fields, string named)
    {
        string registrySection = """{"host": "127.0.0.1:1", "repo": "r", """ + fields.TrimStart('{');
        string json = """{"version": 2, "backend": {"type": "registry", "registry": """ + registrySection + """}, "cache": {"type": ""}}""";
        var e = Assert.Throws<ConfigException>(() => NydusConfigLoader.Parse(json, "test config"));
        Assert.Contains(named, e.Message);
    }

    /// <summary>
    /// nydus-snapshotter's fusedev template (misc/snapshotter/nydusd-config.fusedev.json) as it writes it for a
    /// mount: legacy layout, with host, repo, auth, ca_cert_files and proxy filled in (daemonconfig.BackendConfig).
    /// </summary>
    [Fact]
    public void Snapshotter_legacy_config_carries_every_registry_field_to_the_backend_settings()
    {
        string json = """
            {"device":{"id":"/snap-1","backend":{"type":"registry","config":{"host":"registry.example:5000","repo":"library/app",
              "auth":"dXNlcjpwdw==","scheme":"https","skip_verify":false,"ca_cert_files":["/etc/certs/ca.pem"],
              "proxy":{"url":"http://127.0.0.1:65001","fallback":true,"ping_url":"http://127.0.0.1:40901/server/ping","check_interval":7,"use_http":true},
              "timeout":9,"connect_timeout":4,"retry_limit":2}},
              "cache":{"type":"blobcache","config":{"work_dir":"/var/lib/nydus/cache","disable_indexed_map":false}}},
             "mode":"direct","digest_validate":false,"iostats_files":false,"enable_xattr":true,"amplify_io":1048576,
             "fs_prefetch":{"enable":true,"threads_count":8,"merging_size":1048576,"prefetch_all":true}}
            """;
        ConfigV2 config = NydusConfigLoader.Parse(json, "snapshotter config");
        RegistryBackendSettings settings = RegistryBackendSettings.FromConfig(config.Backend!.Registry!);
        Assert.Equal(["/etc/certs/ca.pem"], settings.CaCertFiles);
        Assert.Equal(TimeSpan.FromSeconds(9), settings.Timeout);
        Assert.Equal(TimeSpan.FromSeconds(4), settings.ConnectTimeout);
        Assert.Equal(2, settings.RetryLimit);
        Assert.NotNull(settings.Proxy);
        Assert.Equal(new Uri("http://127.0.0.1:65001"), settings.Proxy.Url);
        Assert.Equal(new Uri("http://127.0.0.1:40901/server/ping"), settings.Proxy.PingUrl);
        Assert.True(settings.Proxy.Fallback);
        Assert.True(settings.Proxy.UseHttp);
        Assert.Equal(TimeSpan.FromSeconds(7), settings.Proxy.CheckInterval);
        Assert.DoesNotContain("dXNlcjpwdw==", settings.ToString());
    }

    [Fact]
    public void Encrypted_file_cache_is_refused_by_name()
    {
        string json = """
            {"version": 2, "backend": {"type": "registry", "registry": {"host": "127.0.0.1:1", "repo": "r"}},
             "cache": {"type": "blobcache", "filecache": {"work_dir": "/tmp/x", "enable_encryption": true}}}
            """;
        var e = Assert.Throws<ConfigException>(() => NydusConfigLoader.Parse(json, "test config"));
        Assert.Contains("cache.filecache.enable_encryption", e.Message);
    }
}
