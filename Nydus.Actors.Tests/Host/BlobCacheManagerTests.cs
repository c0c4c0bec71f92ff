using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Nydus.Actors.Api;
using Nydus.Actors.Tests.Support;
using Xunit;
using Xunit.Abstractions;
using Nydus.Actors.Storage.Cache;

namespace Nydus.Actors.Tests.Host;

/// <summary>
/// The blob cache manager (<c>/api/v2/blobs</c>) on a real <c>nydusd singleton</c>: domains of RAFS v6 bootstraps
/// sharing data blobs, kept across a restart (journal, secrets sealed), bad input answered 4xx, the <c>--config</c>
/// blobs list, and the disk limit evicting only blobs no domain uses.
/// </summary>
public sealed class BlobCacheManagerTests(ITestOutputHelper output) : IDisposable
{
    private const string BlobA = "be7d77eeb719f70884758d1aa800ed0fb09d701aaec469964e9d54325f0d5fef";
    // The second bootstrap is a copy of the first whose blob table names this blob instead (same length, so the
    // layout is unchanged): two images with different data blobs, without an image builder.
    private const string BlobB = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    private const string Secret = "c2VjcmV0LXVzZXI6c2VjcmV0LXBhc3N3b3JkLTEyMzQ1"; // base64 of a made-up user:password

    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(60);
    private readonly TempDir _dir = new("bcm");

    public void Dispose() => _dir.Dispose();

    private string BootA => ImageFixtures.UpstreamFile("bootstrap", "rafs-v6-2.2.boot");

    private string BootB()
    {
        var path = _dir.Combine("b.boot");
        if (!File.Exists(path))
        {
            var bytes = File.ReadAllBytes(BootA);
            var from = Encoding.ASCII.GetBytes(BlobA);
            int replaced = 0;
            for (int i = bytes.AsSpan().IndexOf(from); i >= 0; i = bytes.AsSpan().IndexOf(from))
            {
                Encoding.ASCII.GetBytes(BlobB).CopyTo(bytes, i);
                replaced++;
            }
            Assert.True(replaced > 0, "the fixture bootstrap no longer names its blob");
            File.WriteAllBytes(path, bytes);
        }
        return path;
    }

    private string CacheDir
    {
        get
        {
            var dir = _dir.Combine("cache");
            Directory.CreateDirectory(dir);
            return dir;
        }
    }

    /// <summary>A V2 entry on a registry backend with credentials (never contacted: adding reads the bootstrap only).</summary>
    private string EntryV2(string domain, string id, string bootstrap, string? workDir = null) => new JsonObject
    {
        ["type"] = "bootstrap",
        ["id"] = id,
        ["domain_id"] = domain,
        ["config_v2"] = new JsonObject
        {
            ["version"] = 2,
            ["id"] = id,
            ["backend"] = new JsonObject
            {
                ["type"] = "registry",
                ["registry"] = new JsonObject { ["host"] = "127.0.0.1:1", ["repo"] = "test/image", ["auth"] = Secret, ["scheme"] = "http" },
            },
            ["cache"] = new JsonObject { ["type"] = "filecache", ["filecache"] = new JsonObject { ["work_dir"] = workDir ?? CacheDir } },
            ["metadata_path"] = bootstrap,
        },
    }.ToJsonString();

    /// <summary>The legacy form nydus-snapshotter sends (its FscacheDaemonConfig), localfs backend.</summary>
    private string EntryLegacy(string domain, string id, string bootstrap) => new JsonObject
    {
        ["type"] = "bootstrap",
        ["id"] = id,
        ["domain_id"] = domain,
        ["config"] = new JsonObject
        {
            ["id"] = id,
            ["backend_type"] = "localfs",
            ["backend_config"] = new JsonObject { ["dir"] = ImageFixtures.UpstreamFile("blobs") },
            ["cache_type"] = "blobcache",
            ["cache_config"] = new JsonObject { ["work_dir"] = CacheDir },
            ["prefetch_config"] = new JsonObject { ["enable"] = false, ["threads_count"] = 2, ["merging_size"] = 131072, ["bandwidth_rate"] = 0 },
            ["metadata_path"] = bootstrap,
        },
    }.ToJsonString();

    private async Task<NydusdProcess> StartSingletonAsync(string socket, params string[] extra)
    {
        var process = NydusdProcess.Start(["singleton", "--apisock", socket, "--id", "bcm", "--work-dir", _dir.Combine("work"), .. extra]);
        try
        {
            await process.WaitForStateAsync(socket, "RUNNING", Wait);
            return process;
        }
        catch
        {
            await process.DisposeAsync();
            throw;
        }
    }

    private async Task<(int Status, string Body)> Send(ApiClient api, string method, string path, string? body = null)
    {
        var answer = await api.SendAsync(method, path, body);
        output.WriteLine($"{method} {path} -> {answer.Status} {answer.Body}");
        return answer;
    }

    private async Task Expect(ApiClient api, int status, string method, string path, string? body = null, string? messageContains = null)
    {
        var (got, text) = await Send(api, method, path, body);
        Assert.True(got == status, $"{method} {path}: expected {status}, got {got} {text}");
        if (messageContains is not null) Assert.Contains(messageContains, text);
    }

    /// <summary>GET /api/v2/blobs[?query] as key -> (type, ref_count).</summary>
    private async Task<Dictionary<string, (string Type, int Refs)>> ListAsync(ApiClient api, string query = "")
    {
        var (status, body) = await Send(api, "GET", "/api/v2/blobs" + query);
        Assert.Equal(200, status);
        var result = new Dictionary<string, (string, int)>();
        foreach (var item in JsonNode.Parse(body)!["blobs"]!.AsArray())
        {
            var domain = item!["domain_id"]!.GetValue<string>();
            var id = item["id"]!.GetValue<string>();
            var type = item["type"]!.GetValue<string>();
            result[domain.Length == 0 ? id : $"{domain}/{id}"] = (type, type == "datablob" ? item["ref_count"]!.GetValue<int>() : 1);
            // Listings never show credentials.
            Assert.DoesNotContain(Secret, item.ToJsonString());
        }
        return result;
    }

    [Fact]
    public async Task Domains_share_data_blobs_by_reference_and_survive_a_restart_with_secrets_sealed()
    {
        var socket = _dir.Combine("api.sock");
        await using (var daemon = await StartSingletonAsync(socket))
        using (var api = new ApiClient(socket, Wait))
        {
            // d1: two images on blob A (one entry, two references), one on blob B; d2: one image on blob A.
            await Expect(api, 204, "PUT", "/api/v2/blobs", EntryV2("d1", "img1", BootA));
            await Expect(api, 204, "PUT", "/api/v2/blobs", EntryV2("d1", "img2", BootA));
            await Expect(api, 204, "PUT", "/api/v2/blobs", EntryV2("d1", "img3", BootB()));
            await Expect(api, 204, "PUT", "/api/v2/blobs", EntryLegacy("d2", "img1", BootA));
            // The same entry again is what the client asked for already; another config under its key is a conflict.
            await Expect(api, 204, "PUT", "/api/v2/blobs", EntryV2("d1", "img1", BootA));
            await Expect(api, 409, "PUT", "/api/v2/blobs", EntryV2("d1", "img1", BootB()), "another config");

            var all = await ListAsync(api);
            Assert.Equal(new Dictionary<string, (string, int)>
            {
                ["d1/img1"] = ("bootstrap", 1), ["d1/img2"] = ("bootstrap", 1), ["d1/img3"] = ("bootstrap", 1),
                [$"d1/{BlobA}"] = ("datablob", 2), [$"d1/{BlobB}"] = ("datablob", 1),
                ["d2/img1"] = ("bootstrap", 1), [$"d2/{BlobA}"] = ("datablob", 1),
            }, all);
            Assert.Equal([$"d2/{BlobA}", "d2/img1"], (await ListAsync(api, "?domain_id=d2")).Keys.Order(StringComparer.Ordinal));

            // One entry's config: the legacy form comes back converted to V2, with its bootstrap and data blobs.
            var (status, one) = await Send(api, "GET", "/api/v2/blobs?domain_id=d2&blob_id=img1");
            Assert.Equal(200, status);
            var entry = JsonNode.Parse(one)!;
            Assert.Equal("localfs", entry["config_v2"]!["backend"]!["type"]!.GetValue<string>());
            Assert.Equal(CacheDir, entry["config_v2"]!["cache"]!["filecache"]!["work_dir"]!.GetValue<string>());
            Assert.Equal(Path.GetFullPath(BootA), entry["config_v2"]!["metadata_path"]!.GetValue<string>());
            Assert.Equal([BlobA], entry["data_blobs"]!.AsArray().Select(b => b!.GetValue<string>()));
            var (_, registryEntry) = await Send(api, "GET", "/api/v2/blobs?domain_id=d1&blob_id=img1");
            Assert.DoesNotContain(Secret, registryEntry);

            // Removing one image of d1 releases one reference of blob A; the domain's other image keeps it.
            await Expect(api, 204, "DELETE", "/api/v2/blobs?domain_id=d1&blob_id=img2");
            Assert.Equal(("datablob", 1), (await ListAsync(api, "?domain_id=d1"))[$"d1/{BlobA}"]);
            daemon.Signal(NydusdProcess.SIGTERM);
            Assert.Equal(0, await daemon.WaitForExitAsync(Wait));
        }

        // The journal (every SQLite file of the work dir, write-ahead logs included) holds the entries sealed: neither
        // the credentials nor even the keys are there in plain text.
        var stored = Directory.GetFiles(_dir.Combine("work"), "*.db*");
        Assert.Contains(stored, f => f.EndsWith("journal.db", StringComparison.Ordinal));
        foreach (var file in stored)
        {
            var bytes = File.ReadAllBytes(file);
            Assert.Equal(-1, bytes.AsSpan().IndexOf(Encoding.UTF8.GetBytes(Secret)));
            Assert.Equal(-1, bytes.AsSpan().IndexOf(Encoding.UTF8.GetBytes("d1/img1")));
        }
        Assert.Contains(stored, f => File.ReadAllText(f, Encoding.Latin1).Contains("BlobEntryAdded.v1+sealed", StringComparison.Ordinal));

        await using (var restarted = await StartSingletonAsync(socket))
        using (var api = new ApiClient(socket, Wait))
        {
            Assert.Equal(new Dictionary<string, (string, int)>
            {
                ["d1/img1"] = ("bootstrap", 1), ["d1/img3"] = ("bootstrap", 1),
                [$"d1/{BlobA}"] = ("datablob", 1), [$"d1/{BlobB}"] = ("datablob", 1),
                ["d2/img1"] = ("bootstrap", 1), [$"d2/{BlobA}"] = ("datablob", 1),
            }, await ListAsync(api));

            // A domain goes as a whole; the other domain's share of blob A stays.
            await Expect(api, 204, "DELETE", "/api/v2/blobs?domain_id=d1");
            Assert.Equal([$"d2/{BlobA}", "d2/img1"], (await ListAsync(api)).Keys.Order(StringComparer.Ordinal));
            await Expect(api, 404, "GET", "/api/v2/blobs?domain_id=d1");
        }
    }

    [Fact]
    public async Task Bad_input_is_answered_4xx_and_changes_nothing()
    {
        var socket = _dir.Combine("api.sock");
        await using var daemon = await StartSingletonAsync(socket);
        using var api = new ApiClient(socket, Wait);
        await Expect(api, 204, "PUT", "/api/v2/blobs", EntryV2("d1", "img1", BootA));

        await Expect(api, 400, "PUT", "/api/v2/blobs", "{\"type\":\"bootstrap\",", "not valid JSON");
        await Expect(api, 400, "PUT", "/api/v2/blobs", "[1,2]", "JSON object");
        await Expect(api, 400, "PUT", "/api/v2/blobs", "{\"type\":\"bootstrap\",\"id\":\"x\"}", "config");
        await Expect(api, 400, "PUT", "/api/v2/blobs", EntryV2("d1", "img9", BootA).Replace("\"bootstrap\"", "\"layer\""), "type");
        await Expect(api, 400, "PUT", "/api/v2/blobs", EntryV2("d1", "img9", BootA).Replace("\"bootstrap\"", "\"datablob\""), "only 'bootstrap'");
        await Expect(api, 400, "PUT", "/api/v2/blobs", EntryV2("d/1", "img9", BootA), "domain_id");
        await Expect(api, 400, "PUT", "/api/v2/blobs", EntryV2("d1", "img9", _dir.Combine("missing.boot")), "does not exist");
        await Expect(api, 400, "PUT", "/api/v2/blobs", EntryV2("d1", "img9", BootA, _dir.Combine("no-such-dir")), "work_dir");
        await Expect(api, 400, "PUT", "/api/v2/blobs",
            EntryV2("d1", "img9", ImageFixtures.UpstreamFile("repeatable", "sha256-nocompress-repeatable")), "RAFS v5");
        var notBootstrap = _dir.Combine("garbage.boot");
        File.WriteAllBytes(notBootstrap, new byte[8192]);
        await Expect(api, 400, "PUT", "/api/v2/blobs", EntryV2("d1", "img9", notBootstrap), "cannot be read");
        await Expect(api, 409, "PUT", "/api/v2/blobs", EntryV2("d1", "img1", BootB()), "another config");

        await Expect(api, 404, "DELETE", "/api/v2/blobs?domain_id=nope", messageContains: "no domain 'nope'");
        await Expect(api, 404, "DELETE", "/api/v2/blobs?domain_id=d1&blob_id=nope", messageContains: "d1/nope");
        await Expect(api, 404, "GET", "/api/v2/blobs?domain_id=nope");
        await Expect(api, 404, "GET", "/api/v2/blobs?domain_id=d1&blob_id=nope");
        await Expect(api, 400, "DELETE", "/api/v2/blobs");
        await Expect(api, 400, "DELETE", "/api/v2/blobs?domain_id=d1", "{}");
        await Expect(api, 501, "DELETE", "/api/v2/blobs?blob_id=" + BlobA, messageContains: "fscache");

        Assert.Equal([$"d1/{BlobA}", "d1/img1"], (await ListAsync(api)).Keys.Order(StringComparer.Ordinal));
        Assert.Equal("RUNNING", JsonNode.Parse((await Send(api, "GET", "/api/v1/daemon")).Body)!["state"]!.GetValue<string>());
    }

    [Fact]
    public async Task A_singleton_config_adds_its_blobs_list_at_every_start_without_recording_it()
    {
        var config = _dir.Combine("singleton.json");
        var list = new JsonObject
        {
            ["blobs"] = new JsonArray(JsonNode.Parse(EntryV2("cfg", "img1", BootA)), JsonNode.Parse(EntryLegacy("cfg", "img2", BootB())),
                JsonNode.Parse(EntryV2("cfg", "broken", _dir.Combine("missing.boot")))),
        };
        File.WriteAllText(config, list.ToJsonString());
        var socket = _dir.Combine("api.sock");
        await using (var daemon = await StartSingletonAsync(socket, "--config", config))
        using (var api = new ApiClient(socket, Wait))
        {
            Assert.Equal(new[] { "cfg/img1", "cfg/img2", $"cfg/{BlobA}", $"cfg/{BlobB}" }.Order(StringComparer.Ordinal),
                (await ListAsync(api)).Keys.Order(StringComparer.Ordinal));
            var log = await WaitForLogAsync(daemon, "is not added");
            Assert.Contains("cfg/broken", log);
            Assert.Contains("missing.boot does not exist", log);
        }

        // Without the file, a restart has nothing: the list was not recorded (upstream does not record it either).
        await using (var plain = await StartSingletonAsync(socket))
        using (var api = new ApiClient(socket, Wait))
            Assert.Empty(await ListAsync(api));
    }

    /// <summary>
    /// The disk limit (HOCON nydus.blob-cache.disk-limit) on a work dir that the blob cache manager's entries name:
    /// blobs a previous run left there that no domain uses are evicted, least recently used first, down to the limit;
    /// the blob a domain uses stays until the domain is removed. Blob files deleted by someone else (nydus-snapshotter's
    /// cache GC deletes them by name) are forgotten rather than counted.
    /// </summary>
    [Fact]
    public async Task The_disk_limit_evicts_only_blobs_no_domain_uses()
    {
        const string Big = "7334a2594e133cf8ae364189c2276b090fc490c627bcc3fb1077f0419a538e00";
        const string Medium = "d7b86b1e74e316fe945741d1a9fa1b271459fe41481e304977659e0c6ecf56ac";
        // Cache files as an earlier run leaves them: whole blobs fetched through the cache, then closed.
        foreach (var (dir, blobs) in new[] { (ImageFixtures.UpstreamFile("blobs"), new[] { BlobA }), (ImageFixtures.UpstreamFile("repeatable", "blobs"), new[] { Big, Medium }) })
        {
            using var backend = Nydus.Actors.Storage.Backends.LocalFsBackend.ForDirectory(dir);
            using var caches = new BlobCacheRegistry();
            using var cache = caches.Open(new BlobCacheSettings { WorkDir = CacheDir }, backend);
            foreach (var blob in blobs) cache.Fill(blob, 0, (int)backend.GetBlobSize(blob));
        }
        string Data(string blob) => Path.Combine(CacheDir, blob + ".blob.data");
        Assert.All(new[] { BlobA, Big, Medium }, b => Assert.True(File.Exists(Data(b))));

        var hocon = _dir.Combine("limit.conf");
        File.WriteAllText(hocon, "nydus.blob-cache { disk-limit = 64000, check-interval = 200ms }\n");
        var socket = _dir.Combine("api.sock");
        await using var daemon = await StartSingletonAsync(socket, "--hocon", hocon);
        using var api = new ApiClient(socket, Wait);
        await Expect(api, 204, "PUT", "/api/v2/blobs", EntryV2("d1", "img1", BootA));

        await WaitUntilAsync(() => !File.Exists(Data(Big)) && !File.Exists(Data(Medium)), "the unused blobs were evicted", daemon);
        Assert.False(File.Exists(Path.Combine(CacheDir, Big + ".chunk_map")));
        Assert.True(File.Exists(Data(BlobA)), "the blob domain d1 uses was evicted");

        // Unused once its domain goes; over a limit that fits nothing (the next start's), it goes too.
        await Expect(api, 204, "DELETE", "/api/v2/blobs?domain_id=d1");
        Assert.True(File.Exists(Data(BlobA)), "under the limit, an unused blob stays");
        daemon.Signal(NydusdProcess.SIGTERM);
        Assert.Equal(0, await daemon.WaitForExitAsync(Wait));
        File.WriteAllText(hocon, "nydus.blob-cache { disk-limit = 4096, check-interval = 200ms }\n");
        await using var again = await StartSingletonAsync(socket, "--hocon", hocon);
        using var api2 = new ApiClient(socket, Wait);
        await Expect(api2, 204, "PUT", "/api/v2/blobs", EntryV2("d2", "img1", BootB()));
        await WaitUntilAsync(() => !File.Exists(Data(BlobA)), "the blob no domain uses any more was evicted", again);
    }

    private static async Task WaitUntilAsync(Func<bool> condition, string what, NydusdProcess daemon)
    {
        var deadline = DateTime.UtcNow + Wait;
        while (!condition())
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"not seen: {what}\n{daemon.Output}");
            await Task.Delay(100);
        }
    }

    private static async Task<string> WaitForLogAsync(NydusdProcess process, string text)
    {
        var deadline = DateTime.UtcNow + Wait;
        while (!process.Output.Contains(text, StringComparison.Ordinal))
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"no '{text}' in the daemon's output:\n{process.Output}");
            await Task.Delay(50);
        }
        return process.Output;
    }
}
