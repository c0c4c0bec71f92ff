using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;
using Nydus.Actors.Api;

namespace Nydus.Bench;

/// <summary>
/// Cold starts of the published daemon (a singleton with a new work dir each time, so its SQLite journal is created
/// and recovered): exec to the API's first answer, exec to RUNNING, the CPU time spent by then, resident memory when
/// ready and after idling, and how fast the process is gone after <c>exit</c>. The daemon's own "Start-up:" log line
/// (Nydus.Host/StartupTimeline) gives the breakdown by phase, and <c>nydusd -V</c> the floor of any start (runtime,
/// assemblies, command line). Aims (issue 20 item 2): API ready within 400 ms, idle RSS at most 60 MB.
/// </summary>
public static partial class StartupBench
{
    private const int Runs = 7;
    private static readonly TimeSpan Idle = TimeSpan.FromSeconds(5);

    /// <summary>A published nydusd to compare with (e.g. the base commit's, published into another directory): its
    /// starts are interleaved with this build's, one each in turn, so a loaded machine weighs on both alike, and the
    /// table gains its medians and the ratios. The way to measure a change on a shared machine.</summary>
    public const string BaselineVariable = "NYDUS_BENCH_STARTUP_BASELINE";

    public static async Task<BenchReport> RunAsync(string nydusd, string repoRoot)
    {
        var loadBefore = File.ReadAllText("/proc/loadavg").Split(' ')[0];
        var versionMs = new List<double>();
        for (var i = 0; i < Runs; i++) versionMs.Add(await TimeVersionAsync(nydusd));

        var baseline = Environment.GetEnvironmentVariable(BaselineVariable) is { Length: > 0 } path ? Path.GetFullPath(path) : null;
        var runs = new List<StartRun>();
        var baselineRuns = new List<StartRun>();
        for (var i = 0; i < Runs; i++)
        {
            if (baseline is not null)
            {
                var before = await OneStartAsync(baseline);
                baselineRuns.Add(before);
                Console.WriteLine($"  baseline run {i + 1}: API {before.ApiMs:F0} ms, RUNNING {before.RunningMs:F0} ms, CPU {before.CpuMs:F0} ms");
            }
            var run = await OneStartAsync(nydusd);
            runs.Add(run);
            Console.WriteLine($"  run {i + 1}: API {run.ApiMs:F0} ms, RUNNING {run.RunningMs:F0} ms, CPU {run.CpuMs:F0} ms, "
                              + $"RSS {run.RssReadyMiB:F1} MiB ready / {run.RssIdleMiB:F1} MiB idle (anon {run.AnonIdleMiB:F1}), "
                              + $"{run.Threads} threads, exit to gone {run.ExitToGoneMs:F1} ms");
        }
        var loadAfter = File.ReadAllText("/proc/loadavg").Split(' ')[0];

        var report = new BenchReport("nydusd start-up", ["measure", "median", "min", "max", "aim"]);
        Row(report, "exec to API answering (ms)", runs.Select(r => r.ApiMs), "<= 400");
        Row(report, "exec to RUNNING (ms)", runs.Select(r => r.RunningMs), "");
        Row(report, "CPU time used by RUNNING (ms, user+sys)", runs.Select(r => r.CpuMs), "");
        Row(report, "RSS when RUNNING (MiB)", runs.Select(r => r.RssReadyMiB), "");
        Row(report, $"RSS idle, {Idle.TotalSeconds:F0} s after RUNNING (MiB)", runs.Select(r => r.RssIdleMiB), "<= 60");
        Row(report, "of which anonymous (RssAnon, MiB)", runs.Select(r => r.AnonIdleMiB), "");
        Row(report, "of which files: mapped assemblies (RssFile, MiB)", runs.Select(r => r.FileIdleMiB), "");
        Row(report, "of which shared memory: the JIT's code, mapped twice for W^X (RssShmem, MiB)", runs.Select(r => r.ShmemIdleMiB), "");
        Row(report, "threads when idle", runs.Select(r => (double)r.Threads), "");
        Row(report, "exit answered to process gone (ms)", runs.Select(r => r.ExitToGoneMs), "a few");
        Row(report, "`nydusd -V`, exec to exit (ms): runtime + command line floor", versionMs, "");
        if (baseline is not null)
        {
            CompareRow(report, "exec to API answering", runs.Select(r => r.ApiMs), baselineRuns.Select(r => r.ApiMs));
            CompareRow(report, "exec to RUNNING", runs.Select(r => r.RunningMs), baselineRuns.Select(r => r.RunningMs));
            CompareRow(report, "CPU time used by RUNNING", runs.Select(r => r.CpuMs), baselineRuns.Select(r => r.CpuMs));
            // The steadier figure on a loaded machine: the process's CPU time when Kestrel listened (`api` mark).
            CompareRow(report, "CPU time used by the API listening (`api` mark)", runs.Select(r => PhaseCpu(r, "api")), baselineRuns.Select(r => PhaseCpu(r, "api")));
        }

        // The breakdown: each phase's median mark, in the order the daemon logged them.
        var phases = runs.SelectMany(r => r.Phases).Select(p => p.Name).Distinct().ToList();
        foreach (var phase in phases)
        {
            var marks = runs.Select(r => r.Phases.FirstOrDefault(p => p.Name == phase)).Where(p => p.Name is not null).ToList();
            report.Add($"phase `{phase}` done at (ms since exec / CPU ms / RSS MiB)",
                $"{F(Median(marks.Select(m => m.WallMs)))} / {F(Median(marks.Select(m => m.CpuMs)))} / {F(Median(marks.Select(m => m.RssMiB)))}",
                "", "", "");
        }
        var jit = runs.Select(r => r.JitMethods).Where(n => n > 0).ToList();
        if (jit.Count > 0) report.Add("methods compiled by the JIT by RUNNING (not in the ReadyToRun images)", F(Median(jit.Select(n => (double)n))), F(jit.Min()), F(jit.Max()), "");

        report.Note($"{Runs} runs of `nydusd singleton --apisock ... --id ... --work-dir ... --log-file ...` (new work dir each run: SQLite journal created and recovered), ReadyToRun publish (`bash build.sh Publish`), polled every 2 ms.");
        report.Note("Phases (marks of one clock, in the daemon's order; the actor system and the API come up on other threads beside the main line): "
                    + "`host` exec to our code (runtime, assemblies, command line), `logging` Serilog, `hocon` configuration, `journal-files` SQLite files checked or created and the key, "
                    + "`actor-system` Akka up (in parallel with the journal files), `daemon-actor` daemon and children created (the journal starts recovering), `api` Kestrel listening, "
                    + "`journal-recovered` the persistence plugin (Akka.Persistence.Sql, linq2db, SQLite) has read the journal, `running` Mount and Start done.");
        if (baseline is not null)
            report.Note($"Baseline ({BaselineVariable}): {baseline}, started in turn with this build ({Runs} runs each, interleaved); "
                        + "a ratio below 1.0 means this build is faster.");
        report.Note($"Load average (1 min) {loadBefore} before and {loadAfter} after: on this shared 2-core machine other builds run beside the bench, so wall times are several times a quiet machine's; CPU time is the steadier figure.");
        return report;
    }

    private static void Row(BenchReport report, string name, IEnumerable<double> values, string aim)
    {
        var list = values.ToList();
        report.Add(name, F(Median(list)), F(list.Min()), F(list.Max()), aim);
    }

    private static double PhaseCpu(StartRun run, string phase) =>
        run.Phases.FirstOrDefault(p => p.Name == phase) is { Name: not null } mark ? mark.CpuMs : double.NaN;

    /// <summary>The baseline's median and this build's median over it, from runs interleaved with this build's.</summary>
    private static void CompareRow(BenchReport report, string name, IEnumerable<double> current, IEnumerable<double> baseline)
    {
        var before = baseline.Where(v => !double.IsNaN(v)).ToList();
        if (before.Count == 0) return;
        report.Add($"{name}, baseline build (ms)", F(Median(before)), F(before.Min()), F(before.Max()), "");
        report.Add($"{name}, this build / baseline (ratio of medians)", (Median(current) / Median(before)).ToString("F2", CultureInfo.InvariantCulture), "", "", "");
    }

    private readonly record struct Phase(string Name, double WallMs, double CpuMs, double RssMiB);

    private sealed record StartRun(double ApiMs, double RunningMs, double CpuMs, double RssReadyMiB, double RssIdleMiB,
        double AnonIdleMiB, double FileIdleMiB, double ShmemIdleMiB, int Threads, double ExitToGoneMs, List<Phase> Phases, int JitMethods);

    private static async Task<double> TimeVersionAsync(string nydusd)
    {
        var info = new ProcessStartInfo(nydusd, "-V") { RedirectStandardOutput = true, UseShellExecute = false };
        var clock = Stopwatch.StartNew();
        using var process = Process.Start(info)!;
        await process.StandardOutput.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await process.WaitForExitAsync(timeout.Token);
        return clock.Elapsed.TotalMilliseconds;
    }

    private static async Task<StartRun> OneStartAsync(string nydusd)
    {
        var dir = Path.Combine(Path.GetTempPath(), $"nydus-bench-startup-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        var socket = Path.Combine(dir, "api.sock");
        var log = Path.Combine(dir, "nydusd.log");
        var info = new ProcessStartInfo(nydusd)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var a in new[] { "singleton", "--apisock", socket, "--id", "bench", "--work-dir", Path.Combine(dir, "work"), "--log-file", log })
            info.ArgumentList.Add(a);

        var clock = Stopwatch.StartNew();
        using var process = Process.Start(info)!;
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        try
        {
            using var client = new ApiClient(socket, TimeSpan.FromSeconds(10));
            var deadline = TimeSpan.FromSeconds(60);
            double apiMs = double.NaN;
            while (true)
            {
                if (clock.Elapsed > deadline) throw new TimeoutException($"nydusd not RUNNING within {deadline}");
                if (process.HasExited) throw new InvalidOperationException($"nydusd exited with {process.ExitCode}");
                if (File.Exists(socket))
                {
                    try
                    {
                        var (status, body) = await client.SendAsync("GET", "/api/v1/daemon");
                        if (double.IsNaN(apiMs)) apiMs = clock.Elapsed.TotalMilliseconds;
                        if (status == 200 && body.Contains("\"RUNNING\"")) break;
                    }
                    // Not listening yet, or too slow to answer on a loaded machine: ask again.
                    catch (Exception e) when (e is HttpRequestException or TaskCanceledException) { }
                }
                await Task.Delay(2);
            }
            var runningMs = clock.Elapsed.TotalMilliseconds;
            var cpuMs = ReadCpuMs(process.Id);
            var ready = ReadStatus(process.Id);
            await Task.Delay(Idle);
            var idle = ReadStatus(process.Id);

            await client.SendAsync("PUT", "/api/v1/daemon/exit");
            var answered = Stopwatch.GetTimestamp();
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            await process.WaitForExitAsync(timeout.Token);
            var exitToGone = Stopwatch.GetElapsedTime(answered).TotalMilliseconds;

            var (phases, jit) = ParseTimeline(log);
            return new StartRun(apiMs, runningMs, cpuMs, ready.Rss, idle.Rss, idle.Anon, idle.File, idle.Shmem, idle.Threads, exitToGone, phases, jit);
        }
        finally
        {
            if (!process.HasExited) process.Kill(entireProcessTree: true);
            try { Directory.Delete(dir, true); } catch (IOException) { }
        }
    }

    [GeneratedRegex(@" ([a-z+-]+)=([0-9]+)ms/([0-9]+)cpu/([0-9]+)MiB")]
    private static partial Regex PhaseMark();

    [GeneratedRegex(@"jit=([0-9]+) methods")]
    private static partial Regex JitCount();

    /// <summary>The daemon's "Start-up:" line: <c>phase=wall ms/cpu ms/RSS MiB</c> marks and the JIT's count.</summary>
    private static (List<Phase> Phases, int Jit) ParseTimeline(string log)
    {
        var line = File.ReadLines(log).LastOrDefault(l => l.Contains("Start-up:", StringComparison.Ordinal));
        if (line is null) return ([], 0);
        var phases = PhaseMark().Matches(line).Select(m => new Phase(m.Groups[1].Value,
            double.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture), double.Parse(m.Groups[3].Value, CultureInfo.InvariantCulture),
            double.Parse(m.Groups[4].Value, CultureInfo.InvariantCulture))).ToList();
        var jit = JitCount().Match(line);
        return (phases, jit.Success ? int.Parse(jit.Groups[1].Value, CultureInfo.InvariantCulture) : 0);
    }

    /// <summary>utime + stime of the process, from /proc/PID/stat (clock ticks of 10 ms).</summary>
    private static double ReadCpuMs(int pid)
    {
        var stat = File.ReadAllText($"/proc/{pid}/stat");
        var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        return (long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture)) * 10.0;
    }

    private static (double Rss, double Anon, double File, double Shmem, int Threads) ReadStatus(int pid)
    {
        double rss = double.NaN, anon = double.NaN, file = double.NaN, shmem = double.NaN;
        var threads = 0;
        foreach (var line in File.ReadLines($"/proc/{pid}/status"))
        {
            var parts = line.Split((char[])[' ', '\t', ':'], StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length < 2) continue;
            switch (parts[0])
            {
                case "VmRSS": rss = Kib(parts[1]); break;
                case "RssAnon": anon = Kib(parts[1]); break;
                case "RssFile": file = Kib(parts[1]); break;
                case "RssShmem": shmem = Kib(parts[1]); break;
                case "Threads": threads = int.Parse(parts[1], CultureInfo.InvariantCulture); break;
            }
        }
        return (rss, anon, file, shmem, threads);

        static double Kib(string value) => double.Parse(value, CultureInfo.InvariantCulture) / 1024;
    }

    private static double Median(IEnumerable<double> values)
    {
        var sorted = values.Where(v => !double.IsNaN(v)).Order().ToList();
        if (sorted.Count == 0) return double.NaN;
        return sorted.Count % 2 == 1 ? sorted[sorted.Count / 2] : (sorted[sorted.Count / 2 - 1] + sorted[sorted.Count / 2]) / 2;
    }

    private static string F(double v) => v.ToString("F1", CultureInfo.InvariantCulture);
}
