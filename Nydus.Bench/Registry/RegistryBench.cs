using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text.Json;
using Nydus.Actors.Api;
using Nydus.Bench.Passthrough;

namespace Nydus.Bench.Registry;

/// <summary>
/// Cold reads from an OCI registry: a generated ~5,000-file RAFS v5 image whose blob is pushed to Debian's
/// docker-registry on 127.0.0.1, mounted by the published nydusd with a fresh blob cache per row. Rows: cold
/// on-demand read of the whole tree without and with read amplification (amplify_io / rafs.batch_size), cold with
/// prefetch_all running, warm (blob cache full, page cache dropped), and curl fetching the same blob bytes.
/// Columns: time, backend requests, bytes fetched from the registry vs bytes read (read amplification).
/// </summary>
public static partial class RegistryBench
{
    internal const string Repo = "library/bench-tree";
    private const int Dirs = 50;
    private const int FilesPerDir = 100;
    private const int MaxFileSize = 8192;
    private static readonly TimeSpan MountTimeout = TimeSpan.FromSeconds(60);

    public static async Task<BenchReport> RunAsync(string nydusd, string repoRoot)
    {
        string work = Path.Combine("/var/tmp", $"nydus-bench-registry-{Guid.NewGuid():N}");
        Directory.CreateDirectory(work);
        Process? registry = null;
        try
        {
            var clock = Stopwatch.StartNew();
            var image = RafsV5TreeWriter.Write(work, Dirs, FilesPerDir, MaxFileSize);
            Console.WriteLine($"  image: {image.Files} files, {image.FileBytes / 1e6:F1} MB, blob {image.BlobId[..12]}");
            int port = FreePort();
            registry = StartRegistry(work, port);
            string host = $"127.0.0.1:{port}";
            await PushAsync(host, image.BlobPath, image.BlobId);

            var report = new BenchReport("Cold reads from a registry: nydusd (FUSE, blob cache) vs curl of the same blob",
                ["row", "time (s)", "backend requests", "fetched (MB)", "read (MB)", "fetched/read"]);
            string MB(long bytes) => (bytes / 1e6).ToString("F1", CultureInfo.InvariantCulture);
            string Ratio(long fetched, long read) => read == 0 ? "-" : (fetched / (double)read).ToString("F2", CultureInfo.InvariantCulture);

            string noReadAhead = Path.Combine(work, "no-read-ahead.conf");
            File.WriteAllText(noReadAhead, "nydus.blob-cache.read-ahead = 0\n");
            var rows = new (string Name, string Cache, string Rafs, string[] Args)[]
            {
                ("cold on-demand, amplify_io off (before)", "", "\"batch_size\": 0", []),
                ("cold on-demand, amplify_io 1 MiB, read-ahead off (before)", "", "\"batch_size\": 1048576", ["--hocon", noReadAhead]),
                ("cold on-demand, amplify_io 1 MiB + read-ahead 2 (default)", "", "\"batch_size\": 1048576", []),
                ("cold with prefetch_all (4 threads, 1 MiB pieces)", ", \"prefetch\": { \"enable\": true, \"prefetch_all\": true, \"threads\": 4, \"batch_size\": 1048576 }", "\"batch_size\": 1048576", []),
            };
            if (Environment.GetEnvironmentVariable("NYDUS_BENCH_ROWS") is { Length: > 0 } only)
            {
                // For quick looks while working: e.g. NYDUS_BENCH_ROWS=12 runs rows 1 and 2 (0-based), then warm and curl.
                rows = rows.Where((_, i) => only.Contains((char)('0' + i))).ToArray();
            }

            string loadBefore = LoadAverage();
            var seconds = new Dictionary<string, double>();
            string cache = "";
            foreach (var row in rows)
            {
                cache = Path.Combine(work, "cache-" + Guid.NewGuid().ToString("N")[..8]);
                var result = await MeasureAsync(nydusd, work, image, Config(host, cache, row.Cache, row.Rafs), waitForPrefetch: false, row.Args);
                seconds[row.Name] = result.Seconds;
                report.Add(row.Name, F(result.Seconds), result.Requests.ToString(CultureInfo.InvariantCulture),
                    MB(result.Fetched), MB(result.Read), Ratio(result.Fetched, result.Read));
                Console.WriteLine($"  {row.Name}: {result.Seconds:F2} s, {result.Requests} requests");
            }

            // The last cold row's cache is complete once its prefetch ended (MeasureAsync waited for it at unmount).
            Console.WriteLine("  warm row");
            var warm = await MeasureAsync(nydusd, work, image, Config(host, cache, "", "\"batch_size\": 1048576"), waitForPrefetch: false);
            report.Add("warm (blob cache full, page cache dropped)", F(warm.Seconds), warm.Requests.ToString(CultureInfo.InvariantCulture),
                MB(warm.Fetched), MB(warm.Read), Ratio(warm.Fetched, warm.Read));

            // The issue's other aim: warm reads as fast as with the local backend (the same blob file read in place).
            Console.WriteLine($"  warm: {warm.Seconds:F2} s, {warm.Requests} requests; local backend row");
            var local = await MeasureAsync(nydusd, work, image, LocalConfig(work), waitForPrefetch: false);
            report.Add("local backend (localfs, blob read in place, page cache dropped)", F(local.Seconds), "-", "-", MB(local.Read), "-");

            Console.WriteLine($"  local: {local.Seconds:F2} s; curl row");
            KernelCaches.DropAll();
            var curl = Curl($"http://{host}/v2/{Repo}/blobs/sha256:{image.BlobId}");
            report.Add("curl GET of the whole blob", F(curl.Seconds), "1", MB(curl.Bytes), MB(curl.Bytes), "1.00");

            report.Note($"Image: {image.Files} files in {Dirs} directories, 1 B to {MaxFileSize} B each (random), {MB(image.FileBytes)} MB; "
                + "RAFS v5 written by Nydus.Bench/Registry/RafsV5TreeWriter.cs (uncompressed chunks packed in tree order, one blob).");
            report.Note("Registry: Debian docker-registry on 127.0.0.1, filesystem storage under /var/tmp, no auth. nydusd: published Release build, "
                + "registry backend + blobcache, fresh cache dir per cold row, `echo 3 > /proc/sys/vm/drop_caches` before every row.");
            report.Note("Read: every file read whole in tree order by one thread (1 MiB reads); the SHA-256 of all bytes read equals the blob id, "
                + "so every row read exactly the image. Backend requests and fetched bytes: /api/v1/metrics/backend (read_count, read_amount_total).");
            report.Note("amplify_io: an on-demand miss extends its registry request over following missing blocks of the blob up to "
                + "rafs.batch_size (legacy amplify_io) bytes, all stored in the cache. 'before' turns it off (batch_size 0).");
            report.Note("read-ahead (HOCON nydus.blob-cache.read-ahead, default 2): once a blob is read in order, the next missing batch_size range is "
                + "fetched in the background while the reader works through the current one, at most 2 per blob; 'read-ahead off' sets it to 0.");
            if (seconds.TryGetValue(rows.Last(r => r.Name.Contains("(default)", StringComparison.Ordinal)).Name, out double cold))
            {
                report.Note($"Comparison: the default cold walk took {cold / curl.Seconds:F0}x curl's time for the same bytes "
                    + $"({F(cold)} s vs {F(curl.Seconds)} s) and {cold / warm.Seconds:F2}x the warm walk ({F(warm.Seconds)} s): through FUSE "
                    + "every one of the 5000 files costs lookups, open, read and release even warm, so curl's single stream of the blob "
                    + "bounds only the fetching, not the walk. What the registry adds over warm is "
                    + $"{(cold - warm.Seconds) * 1000:F0} ms for {image.BlobSize / 1e6:F1} MB. Warm from the blob cache vs the local "
                    + $"backend: {warm.Seconds / local.Seconds:F2}x ({F(warm.Seconds)} s vs {F(local.Seconds)} s).");
            }

            report.Note($"Total run {clock.Elapsed.TotalSeconds:F0} s on a shared 2-core machine (load average {loadBefore} at the start, "
                + $"{LoadAverage()} at the end: other developers' builds and tests ran beside it, so times vary widely between runs).");
            return report;
        }
        finally
        {
            if (registry is not null)
            {
                try { registry.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
                registry.WaitForExit(10_000);
                registry.Dispose();
            }

            Directory.Delete(work, recursive: true);
        }
    }

    private static string Config(string host, string cacheDir, string cachePrefetch, string rafs) => $$"""
        {
          "version": 2,
          "backend": { "type": "registry", "registry": { "scheme": "http", "host": "{{host}}", "repo": "{{Repo}}", "timeout": 10, "connect_timeout": 5, "retry_limit": 2 } },
          "cache": { "type": "blobcache", "filecache": { "work_dir": {{JsonSerializer.Serialize(cacheDir)}} }{{cachePrefetch}} },
          "rafs": { "mode": "direct", {{rafs}} }
        }
        """;

    private static string LocalConfig(string blobDir) => $$"""
        {
          "version": 2,
          "backend": { "type": "localfs", "localfs": { "dir": {{JsonSerializer.Serialize(blobDir)}} } },
          "cache": { "type": "dummycache" },
          "rafs": { "mode": "direct" }
        }
        """;

    private sealed record Measurement(double Seconds, long Requests, long Fetched, long Read);

    private static async Task<Measurement> MeasureAsync(string nydusd, string work, RafsV5TreeWriter.Image image, string config,
        bool waitForPrefetch, string[]? extraArgs = null)
    {
        string mnt = Path.Combine(work, "mnt");
        Directory.CreateDirectory(mnt);
        string configPath = Path.Combine(work, "config.json");
        File.WriteAllText(configPath, config);
        string socket = Path.Combine(work, "api.sock");
        Console.WriteLine("    mounting");
        var (process, stop) = await StartNydusdAsync(nydusd, work, mnt, image.BootstrapPath, configPath, socket, extraArgs ?? []);
        try
        {
            KernelCaches.DropAll();
            Console.WriteLine("    reading");
            var clock = Stopwatch.StartNew();
            long read = ReadTree(mnt, image);
            double seconds = clock.Elapsed.TotalSeconds;
            using var client = new ApiClient(socket, TimeSpan.FromSeconds(5));
            // A local backend has no backend counters and no blob cache: those rows count no requests.
            var (backendStatus, body) = await client.SendAsync("GET", "/api/v1/metrics/backend");
            var backend = backendStatus == 200 ? JsonDocument.Parse(body).RootElement : default;
            long Counter(JsonElement e, string name) =>
                e.ValueKind == JsonValueKind.Object && e.TryGetProperty(name, out var v) ? v.GetInt64() : 0;
            var result = new Measurement(seconds, Counter(backend, "read_count"), Counter(backend, "read_amount_total"), read);
            var (cacheStatus, cacheMetrics) = await client.SendAsync("GET", "/api/v1/metrics/blobcache");
            if (cacheStatus == 200)
            {
                var readAhead = JsonDocument.Parse(cacheMetrics).RootElement;
                Console.WriteLine($"    read-ahead: {Counter(readAhead, "readahead_requests")} requests, "
                    + $"{Counter(readAhead, "readahead_bytes")} bytes, {Counter(readAhead, "readahead_failures")} failed; "
                    + $"misses {Counter(readAhead, "total") - Counter(readAhead, "whole_hits")}");
            }
            // Let a running prefetch finish so the cache is complete for the warm row (bounded).
            var deadline = Stopwatch.StartNew();
            while (deadline.Elapsed < MountTimeout)
            {
                var (status, cacheBody) = await client.SendAsync("GET", "/api/v1/metrics/blobcache");
                if (status != 200 || !cacheBody.Contains("\"data_all_ready\"") || cacheBody.Contains("\"data_all_ready\":true")) break;
                await Task.Delay(50);
            }

            return result;
        }
        finally
        {
            stop();
        }
    }

    /// <summary>Reads every file whole in tree order; checks that the bytes, concatenated, are the blob.</summary>
    private static long ReadTree(string mnt, RafsV5TreeWriter.Image image)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buffer = new byte[1 << 20];
        long total = 0;
        for (int d = 0; d < Dirs; d++)
        for (int f = 0; f < FilesPerDir; f++)
        {
            using var stream = new FileStream(Path.Combine(mnt, $"d{d:D3}", $"f{f:D4}.bin"), FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.None);
            int n;
            while ((n = stream.Read(buffer, 0, buffer.Length)) > 0)
            {
                hash.AppendData(buffer, 0, n);
                total += n;
            }
        }

        string digest = Convert.ToHexStringLower(hash.GetHashAndReset());
        if (digest != image.BlobId || total != image.FileBytes)
            throw new InvalidOperationException($"read {total} bytes with SHA-256 {digest}, expected {image.FileBytes} bytes = blob {image.BlobId}");
        return total;
    }

    private static async Task<(Process Process, Action Stop)> StartNydusdAsync(string nydusd, string work, string mnt, string bootstrap,
        string config, string socket, string[] extraArgs)
    {
        string cwd = Path.Combine(work, "nydusd-cwd");
        Directory.CreateDirectory(cwd);
        var info = new ProcessStartInfo(nydusd) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = cwd };
        foreach (string a in new[] { "--apisock", socket, "-M", mnt, "--bootstrap", bootstrap, "--config", config,
                     "--work-dir", Path.Combine(work, "nydusd-work-" + Guid.NewGuid().ToString("N")[..8]), "--log-level", "warn" })
            info.ArgumentList.Add(a);
        foreach (string a in extraArgs) info.ArgumentList.Add(a);
        var process = Process.Start(info)!;
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) Console.WriteLine("    nydusd: " + e.Data); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) Console.WriteLine("    nydusd: " + e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();

        void Stop()
        {
            if (!process.HasExited)
            {
                kill(process.Id, 15);
                if (!process.WaitForExit(20_000)) process.Kill(entireProcessTree: true);
            }

            var clock = Stopwatch.StartNew();
            while (File.ReadLines("/proc/self/mounts").Any(line => line.Split(' ')[1] == mnt) && clock.Elapsed < MountTimeout)
            {
                umount2(mnt, 2 /* MNT_DETACH */);
                Thread.Sleep(10);
            }

            process.Dispose();
        }

        try
        {
            using var client = new ApiClient(socket, TimeSpan.FromSeconds(2));
            var clock = Stopwatch.StartNew();
            while (true)
            {
                if (process.HasExited) throw new InvalidOperationException($"nydusd exited with {process.ExitCode}");
                if (clock.Elapsed > MountTimeout) throw new TimeoutException("nydusd did not reach RUNNING");
                if (ApiSocket.IsLive(socket))
                {
                    try
                    {
                        var (status, body) = await client.SendAsync("GET", "/api/v1/daemon");
                        if (status == 200 && body.Contains("\"RUNNING\"")) break;
                    }
                    catch (HttpRequestException)
                    {
                    }
                }

                await Task.Delay(20);
            }
        }
        catch
        {
            Stop();
            throw;
        }

        return (process, Stop);
    }

    internal static Process StartRegistry(string work, int port)
    {
        string storage = Path.Combine(work, "registry");
        Directory.CreateDirectory(storage);
        string config = Path.Combine(work, "registry.yml");
        File.WriteAllText(config, $"""
            version: 0.1
            log:
              level: warn
              accesslog:
                disabled: true
            storage:
              filesystem:
                rootdirectory: {storage}
            http:
              addr: 127.0.0.1:{port}
            """);
        var info = new ProcessStartInfo("/usr/bin/docker-registry") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        info.ArgumentList.Add("serve");
        info.ArgumentList.Add(config);
        var process = Process.Start(info) ?? throw new InvalidOperationException("docker-registry did not start (apt-get install docker-registry)");
        process.OutputDataReceived += (_, _) => { };
        process.ErrorDataReceived += (_, _) => { };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
        var clock = Stopwatch.StartNew();
        while (true)
        {
            if (process.HasExited) throw new InvalidOperationException("docker-registry exited at start");
            try
            {
                http.GetAsync($"http://127.0.0.1:{port}/v2/").GetAwaiter().GetResult().Dispose();
                return process;
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException && clock.Elapsed < TimeSpan.FromSeconds(20))
            {
                Thread.Sleep(50);
            }
        }
    }

    /// <summary>Monolithic blob upload: POST uploads/, then PUT with ?digest=.</summary>
    internal static async Task PushAsync(string host, string blobPath, string blobId)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(120) };
        using var started = await http.PostAsync($"http://{host}/v2/{Repo}/blobs/uploads/", null);
        if (started.StatusCode != HttpStatusCode.Accepted || started.Headers.Location is null)
            throw new InvalidOperationException($"upload start answered {(int)started.StatusCode}");
        var location = new UriBuilder(new Uri(new Uri($"http://{host}"), started.Headers.Location));
        location.Query = (location.Query.Length > 1 ? location.Query.TrimStart('?') + "&" : "") + $"digest=sha256:{blobId}";
        using var content = new StreamContent(File.OpenRead(blobPath));
        content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
        using var done = await http.PutAsync(location.Uri, content);
        if (done.StatusCode != HttpStatusCode.Created) throw new InvalidOperationException($"upload answered {(int)done.StatusCode}");
    }

    private static (double Seconds, long Bytes) Curl(string url)
    {
        var info = new ProcessStartInfo("curl") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string a in new[] { "-sS", "-L", "-o", "/dev/null", "-w", "%{time_total} %{size_download}", url }) info.ArgumentList.Add(a);
        using var process = Process.Start(info)!;
        string output = process.StandardOutput.ReadToEnd();
        if (!process.WaitForExit(120_000) || process.ExitCode != 0) throw new InvalidOperationException($"curl failed: {process.StandardError.ReadToEnd()}");
        string[] parts = output.Trim().Split(' ');
        return (double.Parse(parts[0], CultureInfo.InvariantCulture), long.Parse(parts[1], CultureInfo.InvariantCulture));
    }

    private static string LoadAverage() => File.ReadAllText("/proc/loadavg").Split(' ')[0];

    internal static int FreePort()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        int port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }

    private static string F(double v) => v.ToString(v >= 10 ? "F1" : "F3", CultureInfo.InvariantCulture);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int kill(int pid, int signal);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int umount2(string target, int flags);
}
