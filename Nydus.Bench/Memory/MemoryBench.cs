using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using Nydus.Actors.Api;
using Nydus.Bench;

namespace Nydus.Bench.Memory;

/// <summary>
/// What mounted images cost in memory (issue 20): one nydusd started with only --mountpoint, then 1, 10 and 100
/// API instances of one 5,000-file image (plain EROFS, then RAFS v6 in a second daemon), each instance walked
/// (every directory listed) after it is mounted; then every file of every instance read, then everything unmounted.
/// RSS and RssAnon (/proc/PID/status) at each step: images are read in place (the page cache holds them, counted in
/// RssFile if at all), so anonymous memory must grow with instances, not with the image's size.
/// </summary>
public static partial class MemoryBench
{
    private const int Files = 5000;
    private const int Directories = 50;
    private static readonly int[] Levels = [1, 10, 100];

    public static async Task<BenchReport> RunAsync(string nydusd, string repoRoot)
    {
        string work = Path.Combine("/var/tmp", $"nydus-bench-memory-{Guid.NewGuid().ToString("N")[..8]}");
        Directory.CreateDirectory(work);
        try
        {
            return await RunInAsync(nydusd, work);
        }
        finally
        {
            BenchProcesses.Run("rm", "-rf", "--one-file-system", work);
        }
    }

    private static async Task<BenchReport> RunInAsync(string nydusd, string work)
    {
        var clock = Stopwatch.StartNew();
        string source = Path.Combine(work, "src");
        long bytes = MakeTree(source);
        string erofs = Path.Combine(work, "tree.erofs");
        BenchProcesses.Run("mkfs.erofs", "--quiet", erofs, source);
        string blobs = Path.Combine(work, "blobs");
        Directory.CreateDirectory(blobs);
        string rafs = Path.Combine(work, "tree.rafsv6");
        RafsV6FromErofs.Build(source, rafs, blobs, (file, args) => BenchProcesses.Run(file, args));
        string config = "{\"version\":2,\"backend\":{\"type\":\"localfs\",\"localfs\":{\"dir\":" + JsonSerializer.Serialize(blobs)
                        + "}},\"cache\":{\"type\":\"dummycache\"},\"rafs\":{\"mode\":\"direct\"}}";
        Console.WriteLine($"  tree: {Files} files, {bytes / 1e6:F1} MB; images built in {clock.Elapsed.TotalSeconds:F0} s");

        string load = File.ReadAllText("/proc/loadavg").Trim();
        var erofsColumn = await MeasureOrReportAsync(nydusd, work, "erofs", erofs, config, source);
        var rafsColumn = await MeasureOrReportAsync(nydusd, work, "rafs", rafs, config, source);
        string loadAfter = File.ReadAllText("/proc/loadavg").Trim();

        var report = new BenchReport("memory: mounted instances of a 5,000-file image under one daemon",
            ["measure", "plain EROFS", "RAFS v6"]);
        foreach (string row in erofsColumn.Keys.Union(rafsColumn.Keys))
        {
            report.Add(row, erofsColumn.GetValueOrDefault(row, ""), rafsColumn.GetValueOrDefault(row, ""));
        }

        report.Note($"Image: {Files} files of 0-22,000 random bytes in {Directories} directories ({bytes / 1e6:F1} MB of data); " +
                    $"plain EROFS {new FileInfo(erofs).Length / 1e6:F1} MB (data inside), RAFS v6 bootstrap " +
                    $"{new FileInfo(rafs).Length / 1e3:F0} kB + one uncompressed blob (made from mkfs.erofs --chunksize=1M --blobdev, see RafsV6FromErofs), localfs backend, dummycache.");
        report.Note("One published nydusd per column, started with only --mountpoint (no image); instances POSTed to /api/v1/mount at /i0../i99. " +
                    "Each new instance is walked (every directory listed: READDIRPLUS, so every entry is looked up) before the level is measured. " +
                    "\"per instance\" = (RssAnon at the level - RssAnon idle) / instances. \"read everything\" = every file of all 100 instances read whole once and compared with the source.");
        report.Note("RssAnon is the daemon's own memory (managed heap, stacks, native allocations); RssFile is mapped files " +
                    "(the runtime's own DLLs; images are read with pread, never mapped). Values in MiB, after a 2 s settle. " +
                    "The GC collects lazily, so the rows after reading and after unmounting include garbage not yet collected " +
                    "(InstanceMemoryTests runs the daemon with a capped heap to tell a leak from that).");
        report.Note($"Load average (1/5/15 min, runnable/total) before: {load}; after: {loadAfter}. 2 shared cores; other builds may run beside it. Total {clock.Elapsed.TotalSeconds:F0} s.");
        return report;
    }

    /// <summary>One column; a failure is reported in the table (with the rows measured before it), not thrown.</summary>
    private static async Task<Dictionary<string, string>> MeasureOrReportAsync(string nydusd, string work, string name,
        string image, string config, string source)
    {
        var rows = new Dictionary<string, string>();
        try
        {
            await MeasureAsync(nydusd, work, name, image, config, source, rows);
        }
        catch (Exception e) when (e is IOException or InvalidOperationException or TimeoutException or HttpRequestException)
        {
            Console.WriteLine($"  {name}: FAILED: {e}");
            rows["FAILED"] = e.Message.Replace('|', '/');
        }

        return rows;
    }

    private static async Task MeasureAsync(string nydusd, string work, string name, string image,
        string config, string source, Dictionary<string, string> rows)
    {
        string mountPoint = Path.Combine(work, "mnt-" + name);
        Directory.CreateDirectory(mountPoint);
        string socket = Path.Combine(work, name + ".sock");
        Process? process = null;
        try
        {
            process = BenchProcesses.Start(nydusd, "--apisock", socket, "--id", "bench-memory-" + name, "--work-dir", Path.Combine(work, "state-" + name),
                "-M", mountPoint, "--log-level", "warn");
            using var api = new ApiClient(socket, TimeSpan.FromSeconds(120));
            await BenchProcesses.WaitRunningAsync(process, socket, api);
            await Task.Delay(2000);
            Status idle = Status.Of(process.Id);
            rows["idle: RSS / RssAnon (MiB)"] = $"{M(idle.Rss)} / {M(idle.Anon)}";

            int mounted = 0;
            foreach (int level in Levels)
            {
                for (; mounted < level; mounted++)
                {
                    string body = JsonSerializer.Serialize(new { source = image, fs_type = "rafs", config });
                    var (status, text) = await api.SendAsync("POST", $"/api/v1/mount?mountpoint=/i{mounted}", body);
                    if (status != 204) throw new InvalidOperationException($"mount /i{mounted}: {status} {text}");
                    Walk(Path.Combine(mountPoint, $"i{mounted}"));
                }

                await Task.Delay(2000);
                Status at = Status.Of(process.Id);
                rows[$"{level} instance{(level > 1 ? "s" : "")}: RSS / RssAnon (MiB)"] = $"{M(at.Rss)} / {M(at.Anon)}";
                rows[$"{level} instance{(level > 1 ? "s" : "")}: RssAnon per instance (MiB)"] = M((at.Anon - idle.Anon) / (double)level);
            }

            var read = Stopwatch.StartNew();
            long total = 0;
            for (int i = 0; i < mounted; i++)
            {
                total += ReadAndCompare(Path.Combine(mountPoint, $"i{i}"), source);
            }

            await Task.Delay(2000);
            Status full = Status.Of(process.Id);
            rows["100 instances, every file read: RSS / RssAnon (MiB)"] = $"{M(full.Rss)} / {M(full.Anon)}";
            rows["  (read through FUSE, GB in s)"] = $"{total / 1e9:F1} in {read.Elapsed.TotalSeconds:F0}";

            for (int i = 0; i < mounted; i++)
            {
                var (status, text) = await api.SendAsync("DELETE", $"/api/v1/mount?mountpoint=/i{i}");
                if (status != 204) throw new InvalidOperationException($"umount /i{i}: {status} {text}");
            }

            await Task.Delay(2000);
            Status after = Status.Of(process.Id);
            rows["all unmounted again: RSS / RssAnon (MiB)"] = $"{M(after.Rss)} / {M(after.Anon)}";
        }
        finally
        {
            if (process is { HasExited: false })
            {
                kill(process.Id, 15);
                if (!process.WaitForExit(30_000)) process.Kill(entireProcessTree: true);
            }

            var detach = Stopwatch.StartNew();
            while (File.ReadLines("/proc/self/mounts").Any(line => line.Split(' ')[1] == mountPoint))
            {
                if (detach.Elapsed > TimeSpan.FromSeconds(30)) throw new TimeoutException($"{mountPoint} is still mounted after 30 s");
                umount2(mountPoint, 2 /* MNT_DETACH */);
                Thread.Sleep(10);
            }
        }
    }

    private static long MakeTree(string source)
    {
        var random = new Random(20);
        long total = 0;
        for (int i = 0; i < Files; i++)
        {
            string dir = Path.Combine(source, $"d{i % Directories}");
            Directory.CreateDirectory(dir);
            var bytes = new byte[random.Next(0, 22_000)];
            random.NextBytes(bytes);
            File.WriteAllBytes(Path.Combine(dir, $"f{i}"), bytes);
            total += bytes.Length;
        }

        return total;
    }

    private static void Walk(string root)
    {
        int entries = 0;
        foreach (string dir in Directory.EnumerateDirectories(root))
        {
            entries += Directory.GetFiles(dir).Length;
        }

        if (entries != Files) throw new InvalidOperationException($"{root} lists {entries} files, not {Files}");
    }

    private static long ReadAndCompare(string root, string source)
    {
        long total = 0;
        foreach (string file in Directory.EnumerateFiles(source, "*", SearchOption.AllDirectories))
        {
            string relative = Path.GetRelativePath(source, file);
            byte[] served = File.ReadAllBytes(Path.Combine(root, relative));
            if (!served.AsSpan().SequenceEqual(File.ReadAllBytes(file)))
            {
                throw new InvalidOperationException($"{relative} read through {root} differs from the source");
            }

            total += served.Length;
        }

        return total;
    }

    private readonly record struct Status(long Rss, long Anon)
    {
        public static Status Of(int pid)
        {
            long rss = 0, anon = 0;
            foreach (string line in File.ReadLines($"/proc/{pid}/status"))
            {
                if (line.StartsWith("VmRSS:", StringComparison.Ordinal)) rss = Kb(line);
                else if (line.StartsWith("RssAnon:", StringComparison.Ordinal)) anon = Kb(line);
            }

            return new Status(rss, anon);
        }

        private static long Kb(string line) =>
            long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024;
    }

    private static string M(double bytes)
    {
        double v = bytes / (1024 * 1024);
        return v.ToString(Math.Abs(v) >= 100 ? "F0" : Math.Abs(v) >= 10 ? "F1" : "F2", CultureInfo.InvariantCulture);
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int kill(int pid, int signal);

    [LibraryImport("libc", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int umount2(string target, int flags);
}
