using System.Diagnostics;
using System.Globalization;
using Nydus.Actors.Api;

namespace Nydus.Bench;

/// <summary>
/// Time from exec to a working API (GET /api/v1/daemon answered RUNNING) and resident memory once ready, over
/// several cold starts of the published daemon; medians reported. Aim (issue 2): under 1 s and under 80 MB.
/// </summary>
public static class StartupBench
{
    private const int Runs = 7;

    public static async Task<BenchReport> RunAsync(string nydusd, string repoRoot)
    {
        var readyMs = new List<double>();
        var rssMb = new List<double>();
        for (var i = 0; i < Runs; i++)
        {
            var (ready, rss) = await OneStartAsync(nydusd);
            readyMs.Add(ready);
            rssMb.Add(rss);
            Console.WriteLine($"  run {i + 1}: ready in {ready:F0} ms, RSS {rss:F1} MB");
        }
        var report = new BenchReport("nydusd start-up", ["measure", "median", "min", "max", "aim"]);
        report.Add("exec to API ready (ms)", F(Median(readyMs)), F(readyMs.Min()), F(readyMs.Max()), "< 1000");
        report.Add("RSS when ready (MB)", F(Median(rssMb)), F(rssMb.Min()), F(rssMb.Max()), "< 80");
        report.Note($"{Runs} runs of `nydusd singleton --apisock ... --id ... --work-dir ...` (new work dir each run: SQLite journal created and recovered), ReadyToRun publish.");
        return report;
    }

    private static async Task<(double ReadyMs, double RssMb)> OneStartAsync(string nydusd)
    {
        var dir = Path.Combine(Path.GetTempPath(), $"nydus-bench-startup-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        var socket = Path.Combine(dir, "api.sock");
        var info = new ProcessStartInfo(nydusd)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var a in new[] { "singleton", "--apisock", socket, "--id", "bench", "--work-dir", Path.Combine(dir, "work"), "--log-level", "warn" })
            info.ArgumentList.Add(a);

        var clock = Stopwatch.StartNew();
        using var process = Process.Start(info)!;
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        try
        {
            using var client = new ApiClient(socket, TimeSpan.FromSeconds(2));
            var deadline = TimeSpan.FromSeconds(30);
            while (clock.Elapsed < deadline)
            {
                if (process.HasExited) throw new InvalidOperationException($"nydusd exited with {process.ExitCode}");
                if (ApiSocket.IsLive(socket))
                {
                    try
                    {
                        var (status, body) = await client.SendAsync("GET", "/api/v1/daemon");
                        if (status == 200 && body.Contains("\"RUNNING\"")) break;
                    }
                    catch (HttpRequestException) { }
                }
                await Task.Delay(2);
            }
            var ready = clock.Elapsed.TotalMilliseconds;
            var rss = ReadRssMb(process.Id);
            await client.SendAsync("PUT", "/api/v1/daemon/exit");
            await process.WaitForExitAsync(new CancellationTokenSource(TimeSpan.FromSeconds(30)).Token);
            return (ready, rss);
        }
        finally
        {
            if (!process.HasExited) process.Kill(entireProcessTree: true);
            try { Directory.Delete(dir, true); } catch (IOException) { }
        }
    }

    private static double ReadRssMb(int pid)
    {
        foreach (var line in File.ReadLines($"/proc/{pid}/status"))
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                return double.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) / 1024;
        return double.NaN;
    }

    private static double Median(List<double> values)
    {
        var sorted = values.Order().ToList();
        return sorted.Count % 2 == 1 ? sorted[sorted.Count / 2] : (sorted[sorted.Count / 2 - 1] + sorted[sorted.Count / 2]) / 2;
    }

    private static string F(double v) => v.ToString("F1", CultureInfo.InvariantCulture);
}
