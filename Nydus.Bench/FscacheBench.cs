using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Nydus.Actors.Api;
using Nydus.Actors.Fscache;
using Nydus.Actors.Fscache.Simulation;
using Nydus.Bench.Registry;

namespace Nydus.Bench;

/// <summary>
/// fscache on-demand mode (issue 18) against the simulated cachefiles kernel (there is no cachefiles module here):
/// the published <c>nydusd singleton --fscache</c> serving READ messages for the data blob object of the upstream
/// RAFS v6 fixture. Warm: localfs blob (page cache), many READs in flight, each one decompressing its chunk and
/// writing the cache file, then the completion. Cold: per round a new domain whose entry has a registry backend (a
/// real docker-registry on 127.0.0.1) and an empty blob cache: the time from the READs to their completion.
/// </summary>
public static class FscacheBench
{
    private const int WarmReads = 20000;
    private const int InFlight = 64;
    private const int ColdRounds = 5;
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(60);

    public static async Task<BenchReport> RunAsync(string nydusd, string repoRoot)
    {
        string work = Path.Combine("/var/tmp", $"nydus-bench-fscache-{Guid.NewGuid():N}");
        Directory.CreateDirectory(work);
        string fixtures = Path.GetFullPath(Path.Combine(repoRoot, "..", "shared", "fixtures", "upstream"));
        string bootstrap = Path.Combine(fixtures, "bootstrap", "rafs-v6-2.2.boot");
        const string blobId = "be7d77eeb719f70884758d1aa800ed0fb09d701aaec469964e9d54325f0d5fef";
        string blobPath = Path.Combine(fixtures, "blobs", blobId);
        string load = File.ReadAllText("/proc/loadavg").Trim();
        string socket = Path.Combine(work, "cachefiles.sock"), api = Path.Combine(work, "api.sock");
        using var kernel = SimulatedCachefilesKernel.Listen(socket, Path.Combine(work, "kernel-cache"));
        Process? daemon = null, registry = null;
        try
        {
            var info = new ProcessStartInfo(nydusd) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            foreach (string a in new[] { "singleton", "--apisock", api, "--work-dir", Path.Combine(work, "state"), "--fscache", Path.Combine(work, "fscache"),
                         "--fscache-threads", "4", "--log-level", "warn" })
                info.ArgumentList.Add(a);
            info.Environment[SimulatedCachefilesDevice.SocketVariable] = socket;
            daemon = Process.Start(info)!;
            daemon.OutputDataReceived += (_, e) => { if (e.Data is not null) Console.WriteLine("    nydusd: " + e.Data); };
            daemon.ErrorDataReceived += (_, e) => { if (e.Data is not null) Console.WriteLine("    nydusd: " + e.Data); };
            daemon.BeginOutputReadLine();
            daemon.BeginErrorReadLine();
            using var client = new ApiClient(api, Wait);
            await BenchProcesses.WaitRunningAsync(daemon, api, client);
            await kernel.Bound.WaitAsync(Wait);

            var report = new BenchReport("fscache on-demand READ messages (simulated /dev/cachefiles, published nydusd singleton)",
                ["measure", "READs/s", "MiB/s", "median / run"]);

            // Warm: localfs blob, 4 KiB READs, InFlight outstanding at any time.
            await Put(client, Entry("warm", "img", bootstrap, $"{{\"type\":\"localfs\",\"localfs\":{{\"dir\":{Json(Path.GetDirectoryName(blobPath)!)}}}}}",
                Path.Combine(work, "unused-cache")));
            var obj = await kernel.OpenAsync("erofs,warm", blobId, Wait);
            long blocks = obj.Size / 4096;
            await Drive(kernel, obj, 2000, blocks, 4096); // JIT and page cache
            var runs = new List<double>();
            for (int round = 0; round < 3; round++)
            {
                var clock = Stopwatch.StartNew();
                await Drive(kernel, obj, WarmReads, blocks, 4096);
                runs.Add(clock.Elapsed.TotalSeconds);
            }

            double warm = Median(runs);
            report.Add($"warm, {WarmReads} READs of 4 KiB, {InFlight} in flight", F(WarmReads / warm), F(WarmReads * 4096.0 / warm / 1048576), $"{warm * 1000:F0} ms");

            // Cold: a registry on loopback and a fresh blob cache per round.
            int port = RegistryBench.FreePort();
            registry = RegistryBench.StartRegistry(work, port);
            string digest = Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(blobPath)));
            await RegistryBench.PushAsync($"127.0.0.1:{port}", blobPath, digest);
            string renamed = Path.Combine(work, "registry.boot");
            File.WriteAllBytes(renamed, Rename(File.ReadAllBytes(bootstrap), blobId, digest));
            var cold = new List<double>();
            for (int round = 0; round < ColdRounds; round++)
            {
                string domain = "cold" + round;
                await Put(client, Entry(domain, "img", renamed,
                    $"{{\"type\":\"registry\",\"registry\":{{\"host\":\"127.0.0.1:{port}\",\"repo\":\"{RegistryBench.Repo}\",\"scheme\":\"http\"}}}}",
                    Path.Combine(work, "blobcache-" + round)));
                var coldObj = await kernel.OpenAsync("erofs," + domain, digest, Wait);
                var clock = Stopwatch.StartNew();
                await Task.WhenAll(Enumerable.Range(0, (int)blocks).Select(b => kernel.StartRead(coldObj, b * 4096L, 4096))).WaitAsync(Wait);
                cold.Add(clock.Elapsed.TotalSeconds);
                if (!SimulatedCachefilesKernel.ReadBack(coldObj, 0, coldObj.Size).Filled) throw new InvalidOperationException("a cold READ left a hole");
            }

            double coldSeconds = Median(cold);
            report.Add($"cold from the registry, whole object ({blocks} READs of 4 KiB at once, {new FileInfo(blobPath).Length} B zstd blob)",
                F(blocks / coldSeconds), F(blocks * 4096.0 / coldSeconds / 1048576), $"{coldSeconds * 1000:F1} ms");
            report.Note($"Load average at the start: {load}; at the end: {File.ReadAllText("/proc/loadavg").Trim()} (shared 2-core host).");
            report.Note("The kernel is simulated (Nydus.Actors/Fscache/Simulation): requests and replies go over a Unix SOCK_SEQPACKET socket instead of /dev/cachefiles, and the READ_COMPLETE ioctl is a message; so the figures are the daemon's side plus a socket round trip, not the kernel's.");
            report.Note("Warm READs re-read ranges already filled (the real kernel would not ask again): since this session the daemon finds them in the cache file (SEEK_HOLE on the anonymous fd) and completes them without reading the blob; earlier runs decompressed the chunk range and wrote the cache file each time. The fixture object is 9 blocks, so this is per-message cost, not bandwidth.");
            report.Note("Cold: a new domain per round (new image open, empty blobcache work dir), docker-registry on 127.0.0.1; time from sending the READs to the last completion (the OPEN is not counted).");
            return report;
        }
        finally
        {
            foreach (var process in new[] { daemon, registry })
            {
                if (process is null) continue;
                if (!process.HasExited) process.Kill(entireProcessTree: true);
                process.WaitForExit(30_000);
                process.Dispose();
            }

            Directory.Delete(work, recursive: true);
        }
    }

    private static async Task Drive(SimulatedCachefilesKernel kernel, SimulatedObject obj, int count, long blocks, int size)
    {
        var outstanding = new List<Task>(InFlight);
        for (int i = 0; i < count; i++)
        {
            if (outstanding.Count == InFlight)
            {
                var done = await Task.WhenAny(outstanding).WaitAsync(Wait);
                outstanding.Remove(done);
            }

            outstanding.Add(kernel.StartRead(obj, i % blocks * size, size));
        }

        await Task.WhenAll(outstanding).WaitAsync(Wait);
    }

    private static string Entry(string domain, string id, string bootstrap, string backend, string cacheDir)
    {
        Directory.CreateDirectory(cacheDir);
        return $"{{\"type\":\"bootstrap\",\"id\":\"{id}\",\"domain_id\":\"{domain}\",\"config_v2\":{{\"version\":2,\"id\":\"{id}\",\"backend\":{backend},"
            + $"\"cache\":{{\"type\":\"filecache\",\"filecache\":{{\"work_dir\":{Json(cacheDir)}}}}},\"metadata_path\":{Json(bootstrap)}}}}}";
    }

    private static async Task Put(ApiClient client, string entry)
    {
        var (status, body) = await client.SendAsync("PUT", "/api/v2/blobs", entry);
        if (status != 204) throw new InvalidOperationException($"PUT /api/v2/blobs answered {status} {body}");
    }

    private static string Json(string s) => System.Text.Json.JsonSerializer.Serialize(s);

    private static byte[] Rename(byte[] bytes, string from, string to)
    {
        byte[] old = Encoding.ASCII.GetBytes(from), replacement = Encoding.ASCII.GetBytes(to);
        for (int at = bytes.AsSpan().IndexOf(old); at >= 0; at = bytes.AsSpan().IndexOf(old)) replacement.CopyTo(bytes, at);
        return bytes;
    }

    private static double Median(List<double> values)
    {
        var sorted = values.Order().ToList();
        return sorted[sorted.Count / 2];
    }

    private static string F(double value) => value.ToString("F0", CultureInfo.InvariantCulture);
}
