using System.Buffers.Binary;
using System.Diagnostics;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Nydus.Actors.Api;
using Nydus.Actors.Interop;
using Nydus.Actors.Rafs;
using Nydus.Actors.Tests.Support;
using Xunit;

namespace Nydus.Actors.Tests.RegistryFuse;

/// <summary>
/// Prefetch and registry faults through the real nydusd over a real docker-registry on 127.0.0.1, with the upstream
/// fixture image <c>repeatable/sha256-nocompress-repeatable</c> (one 3.5 MB uncompressed blob; its chunk layout is
/// what the file choices below rely on: busybox metadata at the start of the blob, <c>holefiles/</c> from 1.4 MB on,
/// the small <c>tail-hole-*</c> files at its end, 3.5 MB).
/// </summary>
public sealed class RegistryPrefetchMountTests : IDisposable
{
    private const string Repo = "library/nydus-prefetch";
    private const string BlobId = "7334a2594e133cf8ae364189c2276b090fc490c627bcc3fb1077f0419a538e00";

    /// <summary>Near the start of the blob (offset 2441): a cold read of it brings the first MiB only.</summary>
    private const string EarlyFile = "/normal-file-test/busybox/manifest.json";

    /// <summary>At 3.5 MB, far past the first MiB.</summary>
    private const string LateFile = "/normal-file-test/holefiles/tail-hole-5000";

    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);
    private readonly TempDir _dir = new("registry-prefetch");

    private static string BlobPath => ImageFixtures.UpstreamFile("repeatable", "blobs", BlobId);

    private static string Bootstrap => ImageFixtures.UpstreamFile("repeatable", "sha256-nocompress-repeatable");

    private static Dictionary<string, string> ExpectedMd5s()
    {
        var result = File.ReadAllText(ImageFixtures.UpstreamFile("repeatable", "sha256-nocompress-repeatable.result"));
        return Regex.Matches(result, @"^([0-9a-f]{32})  (/\S+)$", RegexOptions.Multiline)
            .ToDictionary(m => m.Groups[2].Value, m => m.Groups[1].Value);
    }

    private string CacheDir => _dir.Combine("cache");

    private string Config(RegistryServer registry, string cachePrefetch = "", string rafsPrefetch = "", string auth = "",
        string repo = Repo) => $$"""
        {
          "version": 2,
          "backend": { "type": "registry", "registry": { "scheme": "http", "host": "{{registry.Host}}", "repo": "{{repo}}", "timeout": 3, "connect_timeout": 3, "retry_limit": 1{{auth}} } },
          "cache": { "type": "blobcache", "filecache": { "work_dir": {{JsonSerializer.Serialize(CacheDir)}} }{{cachePrefetch}} },
          "rafs": { "mode": "direct", "validate": true{{rafsPrefetch}} }
        }
        """;

    private static RegistryServer StartRegistry(Func<TempDir, string>? auth = null)
    {
        Assert.True(RegistryServer.IsAvailable, $"{RegistryServer.BinaryPath} is missing (build.sh installs docker-registry)");
        return RegistryServer.Start(auth);
    }

    private static async Task<JsonElement> MetricsAsync(string socket, string which)
    {
        using var client = new ApiClient(socket);
        var (status, body) = await client.SendAsync("GET", $"/api/v1/metrics/{which}");
        Assert.True(status == 200, $"metrics/{which} answered {status}: {body}");
        return JsonDocument.Parse(body).RootElement;
    }

    private static async Task<string> GetAsync(string socket, string path)
    {
        using var client = new ApiClient(socket);
        var (status, body) = await client.SendAsync("GET", path);
        Assert.True(status == 200, $"{path} answered {status}: {body}");
        return body;
    }

    /// <summary>Polls the blob cache metrics until the prefetch reports everything ready (bounded).</summary>
    private static async Task<JsonElement> WaitForPrefetchAsync(NydusdMount mount)
    {
        var deadline = DateTime.UtcNow + Bound;
        while (true)
        {
            var cache = await MetricsAsync(mount.ApiSocket, "blobcache");
            if (cache.TryGetProperty("data_all_ready", out var ready) && ready.GetBoolean()) return cache;
            Assert.True(DateTime.UtcNow < deadline, $"prefetch did not finish within {Bound}: {cache}\n{mount.Process.Output}");
            await Task.Delay(100);
        }
    }

    private static void AssertReads(string mountPoint, string path, string md5)
    {
        Assert.Equal(Errno.Success, MountedFile.TryReadAll(mountPoint + path, out var content));
        Assert.Equal(md5, Convert.ToHexStringLower(MD5.HashData(content)));
    }

    private static double Seconds(JsonElement cache, string prefix) =>
        cache.GetProperty(prefix + "_secs").GetInt64() + cache.GetProperty(prefix + "_millis").GetInt64() / 1000.0;

    [FuseFact]
    public async Task Prefetch_all_with_a_bandwidth_limit_fills_the_cache_without_readers_within_the_limit()
    {
        using var registry = StartRegistry();
        registry.Push(Repo, File.ReadAllBytes(BlobPath));
        const long limit = 1 << 20;
        await using var mount = await NydusdMount.StartWithConfigAsync(Bootstrap, Config(registry,
            cachePrefetch: $$""", "prefetch": { "enable": true, "prefetch_all": true, "threads": 4, "batch_size": 262144, "bandwidth_limit": {{limit}} }"""));

        var cache = await WaitForPrefetchAsync(mount);
        long bytes = cache.GetProperty("prefetch_data_amount").GetInt64();
        Assert.Equal(new FileInfo(BlobPath).Length, bytes);
        Assert.Equal(bytes, cache.GetProperty("prefetch_fetched_bytes").GetInt64());
        Assert.Equal(0, cache.GetProperty("prefetch_failed_requests").GetInt64());
        // A limit, not a timing target: the rate may be anything below it (the bucket starts empty).
        double elapsed = Seconds(cache, "prefetch_end_time") - Seconds(cache, "prefetch_begin_time");
        Assert.True(bytes / elapsed <= limit * 1.2, $"prefetched {bytes} bytes in {elapsed:F2} s: above the {limit} B/s limit");
        var backend = await MetricsAsync(mount.ApiSocket, "backend");
        Assert.Equal(bytes, backend.GetProperty("read_amount_total").GetInt64());

        string prometheus = await GetAsync(mount.ApiSocket, "/metrics");
        Assert.Contains($"nydus_prefetch_bytes_total{{mountpoint=\"/\"}} {bytes}\n", prometheus);
        Assert.Contains("nydus_prefetch_done{mountpoint=\"/\"} 1\n", prometheus);
        Assert.Contains("nydus_prefetch_requests_remaining{mountpoint=\"/\"} 0\n", prometheus);
        Assert.Contains("Prefetch of blobs finished", mount.Process.Output);

        // Nothing was read through FUSE, yet with the registry gone every file reads whole and right.
        registry.Stop();
        foreach (var (path, md5) in ExpectedMd5s()) AssertReads(mount.MountPoint, path, md5);
    }

    [FuseFact]
    public async Task Unmount_cancels_a_throttled_prefetch_and_the_daemon_exits_promptly()
    {
        using var registry = StartRegistry();
        registry.Push(Repo, File.ReadAllBytes(BlobPath));
        // 64 KiB/s: the 3.5 MB blob would take about a minute.
        var mount = await NydusdMount.StartWithConfigAsync(Bootstrap, Config(registry,
            cachePrefetch: """, "prefetch": { "enable": true, "prefetch_all": true, "threads": 2, "batch_size": 65536, "bandwidth_limit": 65536 }"""));
        await using (mount)
        {
            var deadline = DateTime.UtcNow + Bound;
            while ((await MetricsAsync(mount.ApiSocket, "blobcache")).GetProperty("prefetch_requests_count").GetInt64() < 2)
            {
                Assert.True(DateTime.UtcNow < deadline, "prefetch did not start");
                await Task.Delay(50);
            }

            mount.Process.Signal(NydusdProcess.SIGTERM);
            // Bounded, not a performance figure: a throttle sleep must not hold the exit for the rest of the minute.
            Assert.Equal(0, await mount.Process.WaitForExitAsync(TimeSpan.FromSeconds(15)));
            Assert.False(mount.IsMounted);
            Assert.Contains("Prefetch of blobs cancelled", mount.Process.Output);
        }

        // The daemon is gone, so nothing asks the registry any more: the cache holds only part of the blob, and
        // stays so.
        long Present() => new FileInfo(Path.Combine(CacheDir, BlobId + ".blob.data")).Exists
            ? CountPresentBlocks(Path.Combine(CacheDir, BlobId + ".chunk_map")) : 0;
        long present = Present();
        Assert.InRange(present * 4096, 1, new FileInfo(BlobPath).Length - 1);
        await Task.Delay(500);
        Assert.Equal(present, Present());
    }

    /// <summary>Set bits of a cache map file (its header is skipped by counting only the bitmap tail).</summary>
    private static long CountPresentBlocks(string mapPath)
    {
        byte[] map = File.ReadAllBytes(mapPath);
        int bitmapBytes = (int)((new FileInfo(BlobPath).Length + 4095) / 4096 + 7) / 8;
        long count = 0;
        foreach (byte b in map.AsSpan(map.Length - bitmapBytes)) count += System.Numerics.BitOperations.PopCount(b);
        return count;
    }

    [FuseFact]
    public async Task Stopped_registry_fails_uncached_reads_with_EIO_in_time_while_cached_reads_go_on_until_it_is_back()
    {
        using var registry = StartRegistry();
        registry.Push(Repo, File.ReadAllBytes(BlobPath));
        var expected = ExpectedMd5s();
        await using var mount = await NydusdMount.StartWithConfigAsync(Bootstrap, Config(registry));
        AssertReads(mount.MountPoint, EarlyFile, expected[EarlyFile]);

        registry.Stop();
        var clock = Stopwatch.StartNew();
        Assert.Equal(Errno.EIO, MountedFile.TryReadAll(mount.MountPoint + LateFile, out _));
        // timeout 3 s, retry_limit 1: two attempts and a backoff; refused connections fail at once anyway.
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), $"the failing read took {clock.Elapsed}");
        AssertReads(mount.MountPoint, EarlyFile, expected[EarlyFile]);
        Assert.Contains(BlobId, await GetAsync(mount.ApiSocket, "/api/v1/daemon/events"));

        registry.Start();
        AssertReads(mount.MountPoint, LateFile, expected[LateFile]);
        foreach (var (path, md5) in expected) AssertReads(mount.MountPoint, path, md5);
    }

    [FuseFact]
    public async Task Blob_missing_from_the_registry_gives_EIO_and_a_clear_event_while_cached_files_are_served()
    {
        using var registry = StartRegistry();
        registry.Push(Repo, File.ReadAllBytes(BlobPath));
        var expected = ExpectedMd5s();
        // A first mount caches the start of the blob.
        await using (var first = await NydusdMount.StartWithConfigAsync(Bootstrap, Config(registry)))
            AssertReads(first.MountPoint, EarlyFile, expected[EarlyFile]);

        // The same image from a repository that lacks the blob: the registry answers 404.
        await using var mount = await NydusdMount.StartWithConfigAsync(Bootstrap, Config(registry, repo: "library/empty"));
        Assert.Equal(Errno.EIO, MountedFile.TryReadAll(mount.MountPoint + LateFile, out _));
        string events = await GetAsync(mount.ApiSocket, "/api/v1/daemon/events");
        Assert.Contains(BlobId, events);
        Assert.Contains("not found", events, StringComparison.OrdinalIgnoreCase);
        Assert.Contains(BlobId, mount.Process.Output);
        // What the cache holds and everything in the bootstrap itself are fine.
        AssertReads(mount.MountPoint, EarlyFile, expected[EarlyFile]);
        Assert.True(Directory.Exists(mount.MountPoint + "/normal-file-test/holefiles"));
        Assert.Equal(10, Directory.GetFileSystemEntries(mount.MountPoint + "/normal-file-test/holefiles").Length);
    }

    [FuseFact]
    public async Task Token_that_expires_during_the_run_is_renewed_and_reads_go_on()
    {
        const string basic = "dGVzdGVyOnNlY3JldA=="; // tester:secret
        using var issuer = new RegistryTokenIssuer(expectedBasic: basic, expiresInSeconds: 300);
        using var registry = StartRegistry(issuer.AuthSection);
        registry.Push(Repo, File.ReadAllBytes(BlobPath), new AuthenticationHeaderValue("Bearer", issuer.IssueJwt(Repo, "pull", "push")));
        // The registry accepts a JWT until 60 s past its exp (distribution's token Leeway, for clock skew): an exp
        // 57 s in the past makes the daemon's tokens go stale 3 s after they are issued.
        issuer.JwtLifetimeSeconds = 3 - 60;
        var expected = ExpectedMd5s();
        await using var mount = await NydusdMount.StartWithConfigAsync(Bootstrap,
            Config(registry, auth: $", \"auth\": \"{basic}\""));
        AssertReads(mount.MountPoint, EarlyFile, expected[EarlyFile]);
        int issued = issuer.TokensIssued;
        Assert.True(issued >= 1);

        // The daemon still holds the token (it was told 300 s) but the registry now finds it expired.
        var expiry = Stopwatch.StartNew();
        while (expiry.Elapsed < TimeSpan.FromSeconds(4.5)) await Task.Delay(100);
        AssertReads(mount.MountPoint, LateFile, expected[LateFile]);
        Assert.True(issuer.TokensIssued > issued, "no new token was fetched after the registry refused the old one");
        Assert.Equal(0, issuer.Refused);
    }

    [FuseFact]
    public async Task Prefetch_files_list_brings_the_listed_directory_in_merged_requests_and_nothing_else()
    {
        using var registry = StartRegistry();
        registry.Push(Repo, File.ReadAllBytes(BlobPath));
        string list = _dir.Combine("prefetch.list");
        File.WriteAllText(list, "\n  /normal-file-test/holefiles  \n/no/such/file\n");
        await using var mount = await NydusdMount.StartWithConfigAsync(Bootstrap, Config(registry,
            rafsPrefetch: """, "prefetch": { "enable": true, "threads": 2, "batch_size": 1048576 }"""), "--prefetch-files", list);

        var cache = await WaitForPrefetchAsync(mount);
        Assert.Equal("files", cache.GetProperty("prefetch_kind").GetString());
        // 15 chunk records of the 10 files (dedup zero chunks included) merge into 3 ranges of at most 1 MiB.
        Assert.Equal(15, cache.GetProperty("prefetch_unmerged_chunks").GetInt64());
        Assert.True(3 == cache.GetProperty("prefetch_requests_count").GetInt64(), cache.ToString());
        var backend = await MetricsAsync(mount.ApiSocket, "backend");
        // At most one backend request each: two ranges sharing a 4 KiB cache block may even share one fetch.
        Assert.InRange(backend.GetProperty("read_count").GetInt64(), 2, 3);
        Assert.Contains("Prefetch list entry /no/such/file does not exist", mount.Process.Output);
        Assert.Contains("Prefetch of files finished", mount.Process.Output);

        registry.Stop();
        var expected = ExpectedMd5s();
        foreach (var (path, md5) in expected.Where(e => e.Key.StartsWith("/normal-file-test/holefiles/", StringComparison.Ordinal)))
            AssertReads(mount.MountPoint, path, md5);
        // Not listed, so not fetched.
        Assert.Equal(Errno.EIO, MountedFile.TryReadAll(mount.MountPoint + EarlyFile, out _));
    }

    [FuseFact]
    public async Task Image_prefetch_table_is_used_when_fs_prefetch_is_enabled_without_a_list()
    {
        using var registry = StartRegistry();
        registry.Push(Repo, File.ReadAllBytes(BlobPath));
        string bootstrap = WithPrefetchTable(_dir.Combine("with-table.boot"), "/normal-file-test/holefiles/tail-hole-5000", "/normal-file-test/holefiles/tail-hole-4096");
        // Legacy RafsConfig: fs_prefetch with prefetch_all false (its default is true).
        string legacy = $$"""
            {
              "device": { "backend": { "type": "registry", "config": { "scheme": "http", "host": "{{registry.Host}}", "repo": "{{Repo}}", "timeout": 3, "retry_limit": 1 } },
                          "cache": { "type": "blobcache", "config": { "work_dir": {{JsonSerializer.Serialize(CacheDir)}} } } },
              "mode": "direct", "digest_validate": true,
              "fs_prefetch": { "enable": true, "threads_count": 2, "merging_size": 1048576, "prefetch_all": false }
            }
            """;
        await using var mount = await NydusdMount.StartWithConfigAsync(bootstrap, legacy);
        var cache = await WaitForPrefetchAsync(mount);
        Assert.Equal("files", cache.GetProperty("prefetch_kind").GetString());
        Assert.Equal(2, cache.GetProperty("prefetch_unmerged_chunks").GetInt64());
        // The two tail files lie next to each other in the blob: one request.
        Assert.Equal(1, cache.GetProperty("prefetch_requests_count").GetInt64());
        Assert.Equal(5000 + 4096, cache.GetProperty("prefetch_data_amount").GetInt64());

        registry.Stop();
        var expected = ExpectedMd5s();
        AssertReads(mount.MountPoint, "/normal-file-test/holefiles/tail-hole-5000", expected["/normal-file-test/holefiles/tail-hole-5000"]);
        AssertReads(mount.MountPoint, "/normal-file-test/holefiles/tail-hole-4096", expected["/normal-file-test/holefiles/tail-hole-4096"]);
        Assert.Equal(Errno.EIO, MountedFile.TryReadAll(mount.MountPoint + EarlyFile, out _));
    }

    /// <summary>
    /// No upstream fixture has a prefetch table (MANIFEST.md), so one is added to a copy of the v5 fixture as
    /// <c>nydus-image --prefetch-policy fs</c> would list it: u32 inode numbers, 0-terminated, padded to 8 bytes,
    /// here appended at the end of the bootstrap and named by s_prefetch_table_offset/entries.
    /// </summary>
    private static string WithPrefetchTable(string path, params string[] files)
    {
        byte[] original = File.ReadAllBytes(Bootstrap);
        var inodes = new List<uint>();
        using (var image = RafsImage.Open(original, Bootstrap, BlobSource.None))
        {
            foreach (string file in files)
            {
                ulong ino = image.RootInode;
                foreach (string part in file.Split('/', StringSplitOptions.RemoveEmptyEntries))
                    Assert.True(image.TryLookup(ino, Encoding.UTF8.GetBytes(part), out ino), file);
                inodes.Add((uint)ino);
            }
        }

        int tableOffset = (original.Length + 7) & ~7;
        int entries = (inodes.Count + 1 + 1) & ~1; // room for the terminating 0, padded to 8 bytes
        byte[] patched = new byte[tableOffset + entries * 4];
        original.CopyTo(patched, 0);
        for (int i = 0; i < inodes.Count; i++) BinaryPrimitives.WriteUInt32LittleEndian(patched.AsSpan(tableOffset + i * 4), inodes[i]);
        BinaryPrimitives.WriteUInt64LittleEndian(patched.AsSpan(40), (ulong)tableOffset);
        BinaryPrimitives.WriteUInt32LittleEndian(patched.AsSpan(60), (uint)entries);
        File.WriteAllBytes(path, patched);
        using (var check = RafsImage.Open(patched, path, BlobSource.None))
            Assert.Equal(inodes.Select(i => (ulong)i), check.PrefetchTable);
        return path;
    }

    public void Dispose() => _dir.Dispose();
}
