using System.Text.Json;
using Nydus.Actors.Interop;
using Nydus.Actors.Tests.Support;
using Nydus.Actors.Vfs;
using Xunit;
using Xunit.Abstractions;

namespace Nydus.Actors.Tests.Mounts;

/// <summary>
/// Upstream's per-file metrics and in-flight requests on a real nydusd: images mounted through the API with the
/// switches on (ConfigV2 and legacy) and off, files read through the FUSE mount with ordinary file I/O, then
/// GET /api/v1/metrics/files, /files?latest=true, /pattern and /inflight checked against what was read.
/// </summary>
public sealed class MetricsApiTests(ITestOutputHelper output)
{
    private const int ReadFop = FsIoStats.Read;

    [FuseFact]
    public async Task Files_pattern_and_latest_read_files_count_exactly_what_was_read_when_the_config_asks()
    {
        using var dir = new TempDir("mfile");
        var a = SmallImage.Make(dir.Path, "a", seed: 61);
        var b = SmallImage.Make(dir.Path, "b", seed: 62);
        var c = SmallImage.Make(dir.Path, "c", seed: 63);
        var plain = SmallImage.Config(dir.Path);
        var counted = plain.Replace("\"rafs\":{\"mode\":\"direct\"}",
            "\"rafs\":{\"mode\":\"direct\",\"iostats_files\":true,\"access_pattern\":true,\"latest_read_files\":true}");
        Assert.NotEqual(plain, counted);
        var legacyFilesOnly = "{\"device\":{\"backend\":{\"type\":\"localfs\",\"config\":{\"dir\":" + NydusdMount.Json(dir.Path)
                              + "}}},\"mode\":\"direct\",\"iostats_files\":true}";
        await using var daemon = await NydusdApiDaemon.StartAsync(dir, "mfile-" + Guid.NewGuid().ToString("N")[..8]);
        Assert.Equal(204, (await daemon.MountAsync("/a", a.Image, counted)).Status);
        Assert.Equal(204, (await daemon.MountAsync("/b", b.Image, plain)).Status);
        Assert.Equal(204, (await daemon.MountAsync("/c", c.Image, legacyFilesOnly)).Status);

        // The switches as each instance's config set them.
        Assert.Equal((true, true, true), await SwitchesAsync(daemon, "/a"));
        Assert.Equal((false, false, false), await SwitchesAsync(daemon, "/b"));
        Assert.Equal((true, false, false), await SwitchesAsync(daemon, "/c"));

        // Read two files of /a whole; only look at a third.
        var mountA = Path.Combine(daemon.MountPoint, "a");
        string[] read = ["a-f0.bin", Path.Combine("d1", "a-f1.bin")];
        string unread = Path.Combine("d2", "a-f2.bin");
        long startedSecs = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        var sizes = new Dictionary<ulong, long>();
        foreach (var file in read)
        {
            var expected = File.ReadAllBytes(Path.Combine(a.Source, file));
            Assert.True(expected.AsSpan().SequenceEqual(File.ReadAllBytes(Path.Combine(mountA, file))), file);
            sizes[InodeOf(Path.Combine(mountA, file))] = expected.Length;
        }
        ulong unreadIno = InodeOf(Path.Combine(mountA, unread));
        long finishedSecs = DateTimeOffset.UtcNow.ToUnixTimeSeconds();

        using (var files = await GetJsonAsync(daemon, "/api/v1/metrics/files?id=/a"))
        {
            foreach (var (ino, size) in sizes)
            {
                var entry = files.RootElement.GetProperty(ino.ToString());
                Assert.Equal(size, entry.GetProperty("data_read").GetInt64());
                long reads = entry.GetProperty("fop_hits")[ReadFop].GetInt64();
                Assert.True(reads >= 1, $"no read counted for inode {ino}");
                // Every read succeeded: one size bucket per read, none counted as an error.
                Assert.Equal(reads, entry.GetProperty("block_count_read").EnumerateArray().Sum(e => e.GetInt64()));
                Assert.Equal(0, entry.GetProperty("fop_errors")[ReadFop].GetInt64());
                Assert.True(entry.GetProperty("total_fops").GetInt64() >= reads);
                Assert.Equal(15, entry.GetProperty("fop_hits").GetArrayLength());
                Assert.Equal(8, entry.GetProperty("block_count_read").GetArrayLength());
            }
            // Looked at, never read: if it has counters, no reads in them.
            if (files.RootElement.TryGetProperty(unreadIno.ToString(), out var looked))
            {
                Assert.Equal(0, looked.GetProperty("data_read").GetInt64());
                Assert.Equal(0, looked.GetProperty("fop_hits")[ReadFop].GetInt64());
            }
        }

        using (var pattern = await GetJsonAsync(daemon, "/api/v1/metrics/pattern?id=/a"))
        {
            var entries = pattern.RootElement.EnumerateArray().ToDictionary(e => e.GetProperty("ino").GetUInt64());
            Assert.Equal(sizes.Keys.Order(), entries.Keys.Order());
            foreach (var entry in entries.Values)
            {
                Assert.True(entry.GetProperty("nr_read").GetInt64() >= 1);
                Assert.InRange(entry.GetProperty("first_access_time_secs").GetInt64(), startedSecs, finishedSecs);
                Assert.InRange(entry.GetProperty("first_access_time_nanos").GetInt64(), 0, 999_999_999);
            }
        }

        // The files read since the last call, as ranges; the call clears them.
        Assert.Equal(sizes.Keys.Order(), await LatestReadAsync(daemon, "/a"));
        Assert.Empty(await LatestReadAsync(daemon, "/a"));
        var third = Path.Combine("d1", "a-f4.bin");
        Assert.Equal(File.ReadAllBytes(Path.Combine(a.Source, third)), File.ReadAllBytes(Path.Combine(mountA, third)));
        Assert.Equal([InodeOf(Path.Combine(mountA, third))], await LatestReadAsync(daemon, "/a"));

        // Switches off: the endpoints answer, with nothing in them (upstream exports its empty tables).
        b.AssertServedAt(Path.Combine(daemon.MountPoint, "b"));
        using (var files = await GetJsonAsync(daemon, "/api/v1/metrics/files?id=/b")) Assert.Empty(files.RootElement.EnumerateObject());
        using (var pattern = await GetJsonAsync(daemon, "/api/v1/metrics/pattern?id=/b")) Assert.Empty(pattern.RootElement.EnumerateArray());
        Assert.Empty(await LatestReadAsync(daemon, "/b"));

        // Legacy iostats_files alone: file counters, no patterns.
        var cFile = Path.Combine(daemon.MountPoint, "c", "c-f3.bin");
        long cSize = File.ReadAllBytes(cFile).Length;
        using (var files = await GetJsonAsync(daemon, "/api/v1/metrics/files?id=/c"))
            Assert.Equal(cSize, files.RootElement.GetProperty(InodeOf(cFile).ToString()).GetProperty("data_read").GetInt64());
        using (var pattern = await GetJsonAsync(daemon, "/api/v1/metrics/pattern?id=/c")) Assert.Empty(pattern.RootElement.EnumerateArray());

        // Unknown id, and no id with several instances: 404, as upstream's NoCounter.
        foreach (var path in new[] { "/api/v1/metrics/files?id=/zzz", "/api/v1/metrics/files?id=/zzz&latest=true", "/api/v1/metrics/pattern?id=/zzz",
                     "/api/v1/metrics/files", "/api/v1/metrics/pattern" })
        {
            var (status, body) = await daemon.Api.SendAsync("GET", path);
            output.WriteLine($"{path}: {status} {body}");
            Assert.Equal(404, status);
        }
        Assert.False(daemon.Process.HasExited);
    }

    [FuseFact]
    public async Task Inflight_shows_a_read_while_a_worker_serves_it_and_answers_204_when_idle()
    {
        // nydusd shares (passthrough_fs) a directory that is itself a FUSE mount served by this test, whose READ
        // waits on a gate: a read through nydusd then stays in flight in one of nydusd's workers until the gate opens.
        FuseFaultInjectingFileSystem? slow = null;
        using var inner = FuseTestMount.StartPassthrough(writable: false,
            prepare: backing => File.WriteAllBytes(Path.Combine(backing, "slow.bin"), Enumerable.Range(0, 65536).Select(i => (byte)i).ToArray()),
            wrap: p => slow = new FuseFaultInjectingFileSystem(p));
        using var gate = new ManualResetEventSlim();
        using var dir = new TempDir("minfl");
        await using var daemon = await NydusdApiDaemon.StartAsync(dir, "minfl-" + Guid.NewGuid().ToString("N")[..8]);
        Task<byte[]>? reading = null;
        try
        {
            Assert.Equal(204, (await daemon.MountAsync("/p", inner.MountPoint, "", fsType: "passthrough_fs")).Status);
            var file = Path.Combine(daemon.MountPoint, "p", "slow.bin");
            ulong node = Stat(file).Inode;

            // A worker clears its slot just after writing the reply, so the stat's last request may still show for a
            // moment on a loaded machine: idle is reached within a bounded wait.
            await AwaitStatusAsync(daemon, "/api/v1/metrics/inflight", 204, TimeSpan.FromSeconds(10));

            slow!.HoldReads = gate;
            long startedSecs = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
            reading = Task.Run(() => File.ReadAllBytes(file));
            Assert.True(slow.ReadHeld.Wait(TimeSpan.FromSeconds(30)), "the read never reached the held filesystem");

            var (status, body) = await daemon.Api.SendAsync("GET", "/api/v1/metrics/inflight");
            output.WriteLine($"{status} {body}");
            Assert.Equal(200, status);
            using (var ops = JsonDocument.Parse(body))
            {
                // The kernel may split the file's read (readahead) over several workers: each held one is a READ of it.
                var reads = ops.RootElement.EnumerateArray()
                    .Where(e => e.GetProperty("opcode").GetUInt32() == (uint)Nydus.Actors.Fuse.Abi.FuseOpcode.Read).ToList();
                Assert.NotEmpty(reads);
                foreach (var op in reads)
                {
                    Assert.Equal(node, op.GetProperty("inode").GetUInt64());
                    Assert.NotEqual(0UL, op.GetProperty("unique").GetUInt64());
                    Assert.InRange(op.GetProperty("timestamp_secs").GetInt64(), startedSecs, DateTimeOffset.UtcNow.ToUnixTimeSeconds());
                }
            }

            slow.HoldReads = null;
            gate.Set();
            Assert.Equal(65536, (await reading.WaitAsync(TimeSpan.FromSeconds(30))).Length);
            // The worker clears its slot just after writing the reply the reader woke on: wait (bounded) for it.
            await AwaitStatusAsync(daemon, "/api/v1/metrics/inflight", 204, TimeSpan.FromSeconds(10));
        }
        finally
        {
            if (slow is not null) slow.HoldReads = null;
            gate.Set();
            if (reading is not null) await reading.WaitAsync(TimeSpan.FromSeconds(30)).ContinueWith(_ => { });
        }
    }

    [Fact]
    public async Task Inflight_without_a_FUSE_service_is_501()
    {
        using var dir = new TempDir("msing");
        var socket = dir.Combine("api.sock");
        await using var process = NydusdProcess.Start(["singleton", "--apisock", socket, "--work-dir", dir.Combine("work")]);
        await process.WaitForStateAsync(socket, "RUNNING", TimeSpan.FromSeconds(60));
        using var api = new Nydus.Actors.Api.ApiClient(socket, TimeSpan.FromSeconds(30));
        var (status, body) = await api.SendAsync("GET", "/api/v1/metrics/inflight");
        output.WriteLine($"{status} {body}");
        Assert.Equal(501, status);
        Assert.Equal(404, (await api.SendAsync("GET", "/api/v1/metrics/files")).Status);
    }

    private static Statx Stat(string path)
    {
        Assert.Equal(Errno.Success, FusePosix.LStat(path, out var stat));
        return stat;
    }

    /// <summary>The inode an instance knows a file by (its node id without the VFS instance index).</summary>
    private static ulong InodeOf(string path) => Stat(path).Inode & VirtualFileSystem.InodeMask;

    private static async Task<JsonDocument> GetJsonAsync(NydusdApiDaemon daemon, string path)
    {
        var (status, body) = await daemon.Api.SendAsync("GET", path);
        Assert.True(status == 200, $"GET {path}: {status} {body}");
        return JsonDocument.Parse(body);
    }

    private static async Task<(bool Files, bool Pattern, bool Latest)> SwitchesAsync(NydusdApiDaemon daemon, string id)
    {
        using var metrics = await GetJsonAsync(daemon, "/api/v1/metrics?id=" + id);
        var root = metrics.RootElement;
        return (root.GetProperty("files_account_enabled").GetBoolean(), root.GetProperty("access_pattern_enabled").GetBoolean(),
            root.GetProperty("record_latest_read_files_enabled").GetBoolean());
    }

    /// <summary>GET /files?latest=true, the ranges expanded into the inodes they cover, sorted.</summary>
    private async Task<ulong[]> LatestReadAsync(NydusdApiDaemon daemon, string id)
    {
        var (status, body) = await daemon.Api.SendAsync("GET", "/api/v1/metrics/files?latest=true&id=" + id);
        output.WriteLine($"latest {id}: {status} {body}");
        Assert.Equal(200, status);
        using var doc = JsonDocument.Parse(body);
        var inodes = new List<ulong>();
        foreach (var range in doc.RootElement.EnumerateArray())
        {
            var bounds = range.EnumerateArray().Select(e => e.GetUInt64()).ToArray();
            Assert.InRange(bounds.Length, 1, 2);
            for (ulong ino = bounds[0]; ino <= bounds[^1]; ino++) inodes.Add(ino);
        }
        return [.. inodes.Order()];
    }

    private static async Task AwaitStatusAsync(NydusdApiDaemon daemon, string path, int expected, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            var (status, body) = await daemon.Api.SendAsync("GET", path);
            if (status == expected) return;
            if (DateTime.UtcNow > deadline) Assert.Fail($"GET {path} still answers {status} {body} after {timeout}");
            await Task.Delay(50);
        }
    }
}
