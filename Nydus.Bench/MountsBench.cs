using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using Nydus.Actors.Api;

namespace Nydus.Bench;

/// <summary>
/// The mount API under one daemon (issue 5): time of <c>POST /api/v1/mount</c> for a 5,000-file image (each call
/// opens the image and attaches it at a new virtual mountpoint), and resident memory per additional mounted
/// instance, over 20 instances of the same image. Then the same for umount.
/// </summary>
public static partial class MountsBench
{
    private const int Instances = 20;
    private const int Files = 5000;

    public static async Task<BenchReport> RunAsync(string nydusd, string repoRoot)
    {
        var work = Path.Combine(Path.GetTempPath(), $"nb-mounts-{Guid.NewGuid().ToString("N")[..8]}");
        Directory.CreateDirectory(work);
        var mountPoint = Path.Combine(work, "mnt");
        Directory.CreateDirectory(mountPoint);
        Process? process = null;
        try
        {
            var source = Path.Combine(work, "src");
            var random = new Random(5);
            for (int i = 0; i < Files; i++)
            {
                var dir = Path.Combine(source, $"d{i % 50}");
                Directory.CreateDirectory(dir);
                var bytes = new byte[random.Next(0, 8192)];
                random.NextBytes(bytes);
                File.WriteAllBytes(Path.Combine(dir, $"f{i}"), bytes);
            }
            var image = Path.Combine(work, "tree.erofs");
            BenchProcesses.Run("mkfs.erofs", "--quiet", image, source);
            var config = "{\"version\":2,\"backend\":{\"type\":\"localfs\",\"localfs\":{\"dir\":" + JsonSerializer.Serialize(work)
                         + "}},\"cache\":{\"type\":\"dummycache\"},\"rafs\":{\"mode\":\"direct\"}}";

            var socket = Path.Combine(work, "api.sock");
            process = BenchProcesses.Start(nydusd, "--apisock", socket, "--id", "bench-mounts", "--work-dir", Path.Combine(work, "state"),
                "-M", mountPoint, "--log-level", "warn");
            using var api = new ApiClient(socket, TimeSpan.FromSeconds(60));
            await BenchProcesses.WaitRunningAsync(process, socket, api);

            var rss = new List<double> { RssMb(process.Id) };
            var mountMs = new List<double>();
            for (int i = 0; i < Instances; i++)
            {
                var body = JsonSerializer.Serialize(new { source = image, fs_type = "rafs", config });
                var clock = Stopwatch.StartNew();
                var (status, text) = await api.SendAsync("POST", $"/api/v1/mount?mountpoint=/i{i}", body);
                mountMs.Add(clock.Elapsed.TotalMilliseconds);
                if (status != 204) throw new InvalidOperationException($"mount /i{i}: {status} {text}");
                // Served, not only accepted: one listing and one read through the new mountpoint.
                _ = Directory.GetFiles(Path.Combine(mountPoint, $"i{i}", "d7"));
                _ = File.ReadAllBytes(Path.Combine(mountPoint, $"i{i}", "d7", "f7"));
                rss.Add(RssMb(process.Id));
            }
            var umountMs = new List<double>();
            for (int i = 0; i < Instances; i++)
            {
                var clock = Stopwatch.StartNew();
                var (status, text) = await api.SendAsync("DELETE", $"/api/v1/mount?mountpoint=/i{i}");
                umountMs.Add(clock.Elapsed.TotalMilliseconds);
                if (status != 204) throw new InvalidOperationException($"umount /i{i}: {status} {text}");
            }

            // Per instance: the slope over the last instances, after the first ones warmed up the runtime.
            var perInstance = (rss[^1] - rss[5]) / (Instances - 5);
            var report = new BenchReport("mount API: many instances under one daemon", ["measure", "median", "min", "max", "aim"]);
            report.Add("POST /api/v1/mount, 5,000-file image (ms)", F(Median(mountMs)), F(mountMs.Min()), F(mountMs.Max()), "");
            report.Add("DELETE /api/v1/mount (ms)", F(Median(umountMs)), F(umountMs.Min()), F(umountMs.Max()), "");
            report.Add("RSS per additional instance (MB)", F(perInstance), "", "", "");
            report.Add("RSS with 0 / 20 instances (MB)", $"{F(rss[0])} / {F(rss[^1])}", "", "", "");
            report.Note($"{Instances} mounts of one mkfs.erofs image of {Files} files in 50 directories (plain EROFS, localfs backend), each at its own virtual mountpoint of one daemon started with only --mountpoint; latency is the API round trip; each mount is then listed and read once. RSS per instance = (RSS after 20 - RSS after 5) / 15.");
            return report;
        }
        finally
        {
            if (process is { HasExited: false })
            {
                kill(process.Id, 15);
                if (!process.WaitForExit(20_000)) process.Kill(entireProcessTree: true);
            }
            var detach = Stopwatch.StartNew();
            while (File.ReadLines("/proc/self/mounts").Any(line => line.Split(' ')[1] == mountPoint))
            {
                if (detach.Elapsed > TimeSpan.FromSeconds(30)) throw new TimeoutException($"{mountPoint} is still mounted after 30 s");
                umount2(mountPoint, 2 /* MNT_DETACH */);
                Thread.Sleep(10);
            }
            try { Directory.Delete(work, true); } catch (IOException) { }
        }
    }

    private static double RssMb(int pid)
    {
        foreach (var line in File.ReadLines($"/proc/{pid}/status"))
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) / 1024.0;
        return double.NaN;
    }

    private static double Median(List<double> values)
    {
        var sorted = values.Order().ToList();
        return sorted.Count % 2 == 1 ? sorted[sorted.Count / 2] : (sorted[sorted.Count / 2 - 1] + sorted[sorted.Count / 2]) / 2;
    }

    private static string F(double v) => v.ToString(v >= 100 ? "F0" : v >= 10 ? "F1" : "F2", CultureInfo.InvariantCulture);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int kill(int pid, int signal);

    [LibraryImport("libc", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int umount2(string target, int flags);
}
