using System.Security.Cryptography;
using System.Text.Json;
using System.Text.RegularExpressions;
using Nydus.Actors.Api;
using Nydus.Actors.Interop;
using Nydus.Actors.Tests.Support;
using Xunit;
using Nydus.Actors.Storage.Cache;

namespace Nydus.Actors.Tests.RegistryFuse;

/// <summary>
/// Lazy pulling end to end: the real nydusd mounts an upstream RAFS image whose blob lives in a real
/// docker-registry on 127.0.0.1, reads everything through FUSE, and a second daemon over the same blob cache serves
/// it again without the registry at all.
/// </summary>
public sealed class RegistryMountTests : IDisposable
{
    private const string Repo = "library/nydus-fixture";
    private readonly TempDir _dir = new("registry-mount");

    private static Dictionary<string, string> ExpectedMd5s()
    {
        var result = File.ReadAllText(ImageFixtures.UpstreamFile("repeatable", "sha256-nocompress-repeatable.result"));
        return Regex.Matches(result, @"^([0-9a-f]{32})  (/\S+)$", RegexOptions.Multiline)
            .ToDictionary(m => m.Groups[2].Value, m => m.Groups[1].Value);
    }

    private string Config(RegistryServer registry, bool prefetchAll = false) => $$"""
        {
          "version": 2,
          "backend": { "type": "registry", "registry": { "scheme": "http", "host": "{{registry.Host}}", "repo": "{{Repo}}", "timeout": 5, "connect_timeout": 5, "retry_limit": 1 } },
          "cache": { "type": "blobcache", "filecache": { "work_dir": {{JsonSerializer.Serialize(_dir.Combine("cache"))}} },
                     "prefetch": { "enable": {{(prefetchAll ? "true" : "false")}}, "threads": 2, "batch_size": 1048576, "prefetch_all": {{(prefetchAll ? "true" : "false")}} } },
          "rafs": { "mode": "direct", "validate": true }
        }
        """;

    private static async Task<string> PrometheusAsync(string socket)
    {
        using var client = new ApiClient(socket);
        var (status, body) = await client.SendAsync("GET", "/metrics");
        Assert.Equal(200, status);
        return body;
    }

    private static void AssertAllFilesRead(string mountPoint, Dictionary<string, string> expected)
    {
        foreach (var (path, md5) in expected)
        {
            Assert.Equal(Errno.Success, MountedFile.TryReadAll(mountPoint + path, out var content));
            Assert.Equal(md5, Convert.ToHexStringLower(MD5.HashData(content)));
        }
    }

    private static async Task<JsonElement> MetricsAsync(string socket, string which)
    {
        using var client = new ApiClient(socket);
        var (status, body) = await client.SendAsync("GET", $"/api/v1/metrics/{which}");
        Assert.True(status == 200, $"metrics/{which} answered {status}: {body}");
        return JsonDocument.Parse(body).RootElement;
    }

    [FuseFact]
    public async Task Image_pulled_lazily_from_the_registry_is_served_again_from_the_cache_alone()
    {
        Assert.True(RegistryServer.IsAvailable, $"{RegistryServer.BinaryPath} is missing (build.sh installs docker-registry)");
        using var registry = RegistryServer.Start();
        var blob = ImageFixtures.UpstreamFile("repeatable", "blobs", "7334a2594e133cf8ae364189c2276b090fc490c627bcc3fb1077f0419a538e00");
        Assert.Equal(Path.GetFileName(blob), registry.Push(Repo, File.ReadAllBytes(blob)));
        var bootstrap = ImageFixtures.UpstreamFile("repeatable", "sha256-nocompress-repeatable");
        var expected = ExpectedMd5s();
        Assert.Equal(23, expected.Count);
        var config = Config(registry);

        await using (var first = await NydusdMount.StartWithConfigAsync(bootstrap, config))
        {
            AssertAllFilesRead(first.MountPoint, expected);
            var backend = await MetricsAsync(first.ApiSocket, "backend");
            Assert.Equal("registry", backend.GetProperty("backend_type").GetString());
            Assert.True(backend.GetProperty("read_count").GetInt64() > 0);
            Assert.True(backend.GetProperty("read_amount_total").GetInt64() > 0);
            Assert.Equal(0, backend.GetProperty("read_errors").GetInt64());
            Assert.Contains($"nydus_backend_read_bytes_total{{mountpoint=\"/\"}} {backend.GetProperty("read_amount_total").GetInt64()}\n",
                await PrometheusAsync(first.ApiSocket));
        }

        // Nothing may come from the network now: stop the registry altogether.
        registry.Stop();
        await using (var second = await NydusdMount.StartWithConfigAsync(bootstrap, config))
        {
            AssertAllFilesRead(second.MountPoint, expected);
            var backend = await MetricsAsync(second.ApiSocket, "backend");
            Assert.Equal(0, backend.GetProperty("read_amount_total").GetInt64());
            Assert.Equal(0, backend.GetProperty("read_count").GetInt64());
            var cache = await MetricsAsync(second.ApiSocket, "blobcache");
            Assert.True(cache.GetProperty("whole_hits").GetInt64() > 0);
            Assert.Contains("nydus_backend_read_bytes_total{mountpoint=\"/\"} 0\n", await PrometheusAsync(second.ApiSocket));
        }
    }

    [FuseFact]
    public async Task Disk_limit_evicts_leftover_blobs_but_keeps_the_mounted_images_blob()
    {
        Assert.True(RegistryServer.IsAvailable, $"{RegistryServer.BinaryPath} is missing (build.sh installs docker-registry)");
        using var registry = RegistryServer.Start();
        var blob = ImageFixtures.UpstreamFile("repeatable", "blobs", "7334a2594e133cf8ae364189c2276b090fc490c627bcc3fb1077f0419a538e00");
        string blobId = registry.Push(Repo, File.ReadAllBytes(blob));
        var bootstrap = ImageFixtures.UpstreamFile("repeatable", "sha256-nocompress-repeatable");
        var expected = ExpectedMd5s();

        // A blob left in the cache by an image that is no longer mounted.
        string cacheDir = _dir.Combine("cache");
        var leftover = new byte[200_000];
        new Random(7).NextBytes(leftover);
        using (var caches = new BlobCacheRegistry())
        using (var old = caches.Open(
                   new BlobCacheSettings { WorkDir = cacheDir },
                   new Nydus.Actors.Tests.Storage.CountingBackend().Add("leftover", leftover)))
        {
            old.Read("leftover", 0, new byte[leftover.Length]);
        }
        Assert.True(File.Exists(Path.Combine(cacheDir, "leftover.blob.data")));

        // A limit of one byte: everything not pinned by the mounted image must go at the next check.
        string hocon = _dir.Combine("limit.conf");
        File.WriteAllText(hocon, "nydus.blob-cache { disk-limit = 1, check-interval = 200ms }\n");
        await using var mount = await NydusdMount.StartWithConfigAsync(bootstrap, Config(registry), "--hocon", hocon);
        AssertAllFilesRead(mount.MountPoint, expected);
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (File.Exists(Path.Combine(cacheDir, "leftover.blob.data")))
        {
            Assert.True(DateTime.UtcNow < deadline, "the leftover blob was not evicted within 30 s");
            await Task.Delay(100);
        }

        Assert.False(File.Exists(Path.Combine(cacheDir, "leftover.chunk_map")));
        Assert.True(File.Exists(Path.Combine(cacheDir, blobId + ".blob.data")), "the mounted image's blob was evicted");
        // Still served from the cache: with the registry gone every file reads back intact.
        registry.Stop();
        AssertAllFilesRead(mount.MountPoint, expected);
    }

    [FuseFact]
    public async Task Prefetch_all_brings_the_whole_image_into_the_cache_without_a_reader()
    {
        Assert.True(RegistryServer.IsAvailable, $"{RegistryServer.BinaryPath} is missing (build.sh installs docker-registry)");
        using var registry = RegistryServer.Start();
        var blob = ImageFixtures.UpstreamFile("repeatable", "blobs", "7334a2594e133cf8ae364189c2276b090fc490c627bcc3fb1077f0419a538e00");
        registry.Push(Repo, File.ReadAllBytes(blob));
        var bootstrap = ImageFixtures.UpstreamFile("repeatable", "sha256-nocompress-repeatable");

        await using var mount = await NydusdMount.StartWithConfigAsync(bootstrap, Config(registry, prefetchAll: true));
        // Nobody reads: the prefetch alone must fill the cache (bounded wait).
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        JsonElement cache;
        while (true)
        {
            cache = await MetricsAsync(mount.ApiSocket, "blobcache");
            if (cache.TryGetProperty("data_all_ready", out var ready) && ready.GetBoolean()) break;
            Assert.True(DateTime.UtcNow < deadline, $"prefetch did not finish within 60 s: {cache}");
            await Task.Delay(100);
        }
        Assert.Equal(new FileInfo(blob).Length, cache.GetProperty("prefetch_data_amount").GetInt64());

        // With the registry gone, every file still reads whole and right.
        registry.Stop();
        AssertAllFilesRead(mount.MountPoint, ExpectedMd5s());
    }

    public void Dispose() => _dir.Dispose();
}
