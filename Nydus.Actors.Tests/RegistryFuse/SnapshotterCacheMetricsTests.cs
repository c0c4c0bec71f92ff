using System.Security.Cryptography;
using System.Text.Json;
using System.Text.RegularExpressions;
using Nydus.Actors.Api;
using Nydus.Actors.Interop;
using Nydus.Actors.Storage.Backends;
using Nydus.Actors.Tests.Support;
using Xunit;

namespace Nydus.Actors.Tests.RegistryFuse;

/// <summary>
/// What nydus-snapshotter reads from a running nydusd about its cache: <c>GET /api/v1/metrics/blobcache</c> decoded
/// as its <c>types.CacheMetrics</c> (every field present, with its JSON type), <c>/metrics/backend</c> with
/// upstream's distributions, and its cache manager's usage/GC scan of the <c>store_path</c> the daemon reports.
/// </summary>
public sealed class SnapshotterCacheMetricsTests : IDisposable
{
    private const string Repo = "library/cache-metrics";
    private const string BlobId = "7334a2594e133cf8ae364189c2276b090fc490c627bcc3fb1077f0419a538e00";
    private readonly TempDir _dir = new("cache-metrics");

    /// <summary>nydus-snapshotter pkg/daemon/types.CacheMetrics: JSON name and kind.</summary>
    private static readonly (string Name, JsonValueKind Kind)[] SnapshotterCacheFields =
    [
        ("id", JsonValueKind.String), ("underlying_files", JsonValueKind.Array), ("store_path", JsonValueKind.String),
        ("partial_hits", JsonValueKind.Number), ("whole_hits", JsonValueKind.Number), ("total", JsonValueKind.Number),
        ("entries_count", JsonValueKind.Number), ("prefetch_data_amount", JsonValueKind.Number),
        ("prefetch_requests_count", JsonValueKind.Number), ("prefetch_workers", JsonValueKind.Number),
        ("prefetch_unmerged_chunks", JsonValueKind.Number), ("prefetch_cumulative_time_millis", JsonValueKind.Number),
        ("prefetch_begin_time_secs", JsonValueKind.Number), ("prefetch_begin_time_millis", JsonValueKind.Number),
        ("prefetch_end_time_secs", JsonValueKind.Number), ("prefetch_end_time_millis", JsonValueKind.Number),
        ("buffered_backend_size", JsonValueKind.Number),
    ];

    private static async Task<JsonElement> MetricsAsync(string socket, string which)
    {
        using var client = new ApiClient(socket);
        var (status, body) = await client.SendAsync("GET", $"/api/v1/metrics/{which}?id=/");
        Assert.True(status == 200, $"metrics/{which} answered {status}: {body}");
        return JsonDocument.Parse(body).RootElement.Clone();
    }

    [FuseFact]
    public async Task Cache_metrics_have_every_snapshotter_field_and_its_gc_removes_the_files_they_name()
    {
        Assert.True(RegistryServer.IsAvailable, $"{RegistryServer.BinaryPath} is missing (build.sh installs docker-registry)");
        using var registry = RegistryServer.Start();
        registry.Push(Repo, File.ReadAllBytes(ImageFixtures.UpstreamFile("repeatable", "blobs", BlobId)));
        var bootstrap = ImageFixtures.UpstreamFile("repeatable", "sha256-nocompress-repeatable");
        string cacheDir = _dir.Combine("cache");
        string config = $$"""
            {
              "version": 2,
              "backend": { "type": "registry", "registry": { "scheme": "http", "host": "{{registry.Host}}", "repo": "{{Repo}}", "timeout": 5, "connect_timeout": 5, "retry_limit": 1 } },
              "cache": { "type": "blobcache", "filecache": { "work_dir": {{NydusdMount.Json(cacheDir)}} } },
              "rafs": { "mode": "direct" }
            }
            """;
        var expected = Regex.Matches(File.ReadAllText(ImageFixtures.UpstreamFile("repeatable", "sha256-nocompress-repeatable.result")),
            @"^([0-9a-f]{32})  (/\S+)$", RegexOptions.Multiline).ToDictionary(m => m.Groups[2].Value, m => m.Groups[1].Value);

        await using (var mount = await NydusdMount.StartWithConfigAsync(bootstrap, config))
        {
            foreach (var (path, md5) in expected)
            {
                Assert.Equal(Errno.Success, MountedFile.TryReadAll(mount.MountPoint + path, out var content));
                Assert.Equal(md5, Convert.ToHexStringLower(MD5.HashData(content)));
            }

            JsonElement cache = await MetricsAsync(mount.ApiSocket, "blobcache");
            foreach (var (name, kind) in SnapshotterCacheFields)
            {
                Assert.True(cache.TryGetProperty(name, out var value), $"blobcache metrics lack '{name}': {cache}");
                Assert.True(value.ValueKind == kind, $"'{name}' is {value.ValueKind}, the snapshotter decodes {kind}");
            }

            Assert.Contains(cache.GetProperty("data_all_ready").ValueKind, new[] { JsonValueKind.True, JsonValueKind.False });
            Assert.Equal("/", cache.GetProperty("id").GetString());
            Assert.Equal(cacheDir, cache.GetProperty("store_path").GetString());
            Assert.Equal(1, cache.GetProperty("entries_count").GetInt64());
            string[] files = cache.GetProperty("underlying_files").EnumerateArray().Select(f => f.GetString()!).ToArray();
            Assert.Equal(new[] { BlobId + ".blob.data" }, files);
            Assert.True(File.Exists(Path.Combine(cacheDir, files[0])));
            Assert.True(cache.GetProperty("total").GetInt64() >= cache.GetProperty("whole_hits").GetInt64());

            JsonElement backend = await MetricsAsync(mount.ApiSocket, "backend");
            long reads = backend.GetProperty("read_count").GetInt64();
            Assert.True(reads > 0);
            long[] bySize = backend.GetProperty("read_count_block_size_dist").EnumerateArray().Select(e => e.GetInt64()).ToArray();
            Assert.Equal(8, bySize.Length);
            Assert.Equal(reads, bySize.Sum());
            long[][] latencyBySize = backend.GetProperty("read_latency_sizes_dist").EnumerateArray()
                .Select(row => row.EnumerateArray().Select(e => e.GetInt64()).ToArray()).ToArray();
            Assert.Equal(8, latencyBySize.Length);
            Assert.All(latencyBySize, row => Assert.Equal(8, row.Length));
            Assert.Equal(bySize, latencyBySize.Select(row => row.Sum()).ToArray());
            Assert.Equal(8, backend.GetProperty("read_cumulative_latency_millis_dist").GetArrayLength());
            Assert.Equal(backend.GetProperty("read_cumulative_latency_millis_total").GetInt64(),
                backend.GetProperty("read_cumulative_latency_millis_dist").EnumerateArray().Sum(e => e.GetInt64()));
        }

        // Snapshot removed: the snapshotter measures the blob's cache by name, then deletes it.
        Assert.True(SnapshotterCacheManager.CacheUsage(cacheDir, BlobId) > 0);
        SnapshotterCacheManager.RemoveBlobCache(cacheDir, BlobId);
        Assert.Empty(Directory.GetFiles(cacheDir));
    }

    [Theory]
    [InlineData(0, 0)]
    [InlineData(1023, 0)]
    [InlineData(1024, 1)]
    [InlineData(4095, 1)]
    [InlineData(4096, 2)]
    [InlineData(16 * 1024, 3)]
    [InlineData(64 * 1024, 4)]
    [InlineData(128 * 1024, 5)]
    [InlineData(512 * 1024, 6)]
    [InlineData(1024 * 1024, 7)]
    [InlineData(64L << 20, 7)]
    public void Request_size_buckets_are_upstreams(long bytes, int bucket) =>
        Assert.Equal(bucket, BackendMetrics.SizeBucket(bytes));

    public void Dispose() => _dir.Dispose();
}
