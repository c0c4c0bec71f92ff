using System.Diagnostics;
using System.Globalization;
using Nydus.Bench.Passthrough;
using Nydus.Bench.Report;

namespace Nydus.Bench;

/// <summary>
/// The passthrough mount (nydusd --shared-dir --writable) with and without the kernel's FUSE passthrough, against
/// libfuse's passthrough_ll example and against the backing directory itself, on the same machine in one run:
/// sequential write and read (fio), random 4 KiB reads, and create+stat+unlink of small files. Rounds visit every
/// target once in an order rotated per round; each ratio is taken within a round, and the median over rounds is
/// reported. Issue 20's aims: reads at least 0.9x the backing directory (kernel passthrough), create and unlink at
/// least 1.0x libfuse.
/// </summary>
public static class PassthroughBench
{
    private const int Rounds = 3;
    private const int SmallFiles = 10_000;
    private const int NydusThreads = 4;
    private const int RandomReadJobs = 4;
    private const string FileSize = "512M";
    private const double FileMiB = 512;

    /// <summary>Past this, no new round starts (a round under heavy load took over 15 minutes with 1 GiB files).</summary>
    private static readonly TimeSpan Budget = TimeSpan.FromMinutes(30);

    private const string Host = "backing dir";
    private const string Libfuse = "libfuse";

    /// <summary>passthrough_ll mounted with default_permissions, as nydusd mounts: the kernel checks permissions itself,
    /// and so refreshes a directory's attributes (a GETATTR) before the next create or unlink in it after each change.</summary>
    private const string LibfuseChecked = "libfuse default_permissions";
    private const string Nydus = "nydus";

    /// <summary>The same passthrough served through FUSE alone (no FUSE_PASSTHROUGH): an empty-root daemon, mounted by the API.</summary>
    private const string NydusFuse = "nydus no kernel passthrough";
    private static readonly string[] Targets = [Host, Libfuse, LibfuseChecked, Nydus, NydusFuse];

    /// <summary>
    /// A row: its short name (history, plots), what it measures, and the aim of nydus against one baseline (NaN: none).
    /// </summary>
    private sealed record Measure(string Key, string Description, string AimBaseline, double Aim);

    private static readonly Measure SequentialWrite = new("sequential write", $"sequential write {FileSize}iB, 1 MiB blocks, incl. final fsync (MiB/s)", Host, double.NaN);
    private static readonly Measure ColdRead = new("sequential read cold", $"sequential read {FileSize}iB, 1 MiB blocks, caches dropped (MiB/s)", Host, 0.9);
    private static readonly Measure WarmRead = new("sequential read warm", $"sequential read {FileSize}iB, 1 MiB blocks, host page cache warm (MiB/s)", Host, 0.9);
    private static readonly Measure RandomRead = new("4 KiB random read warm", $"random read 4 KiB, {RandomReadJobs} jobs x 32 MiB, host page cache warm (IOPS)", Host, 0.9);
    private static readonly Measure Create = new("create small files", $"create {SmallFiles:N0} files of 1 KiB (files/s)", Libfuse, 1.0);
    private static readonly Measure Stat = new("lstat small files", $"lstat {SmallFiles:N0} files, dentries dropped (files/s)", Libfuse, double.NaN);
    private static readonly Measure Unlink = new("unlink small files", $"unlink {SmallFiles:N0} files, dentries dropped (files/s)", Libfuse, 1.0);
    private static readonly Measure[] Measures = [SequentialWrite, ColdRead, WarmRead, RandomRead, Create, Stat, Unlink];

    /// <summary>The ratios shown and kept in the history: (series, baseline).</summary>
    private static readonly (string Series, string Baseline)[] Ratios = [(Nydus, Host), (Nydus, Libfuse), (Nydus, LibfuseChecked), (NydusFuse, Libfuse)];

    public static async Task<BenchReport> RunAsync(string nydusd, string repoRoot)
    {
        if (!Environment.IsPrivilegedProcess) throw new InvalidOperationException("the passthrough benchmark needs root (FUSE mounts, drop_caches)");
        if (!File.Exists("/dev/fuse")) throw new InvalidOperationException("the passthrough benchmark needs /dev/fuse");

        var clock = Stopwatch.StartNew();
        var loadBefore = File.ReadAllText("/proc/loadavg").Trim();
        var commit = BenchHistory.CurrentCommit(repoRoot);
        var scratch = Path.Combine(Path.GetTempPath(), $"nydus-bench-passthrough-{Guid.NewGuid():N}");
        var backing = Path.Combine(scratch, "backing");
        var libfuseMount = Path.Combine(scratch, "mnt-libfuse");
        var libfuseCheckedMount = Path.Combine(scratch, "mnt-libfuse-checked");
        var nydusMount = Path.Combine(scratch, "mnt-nydus");
        var nydusFuseMount = Path.Combine(scratch, "mnt-nydus-fuse");
        foreach (var dir in new[] { backing, libfuseMount, libfuseCheckedMount, nydusMount, nydusFuseMount }) Directory.CreateDirectory(dir);

        // results[measure][target][round]; NaN where a round did not run or failed.
        var results = Measures.ToDictionary(m => m.Key, _ => Targets.ToDictionary(t => t, _ => Enumerable.Repeat(double.NaN, Rounds).ToArray()));
        var failures = new List<string>();
        var roundsRun = 0;
        try
        {
            Console.WriteLine("  building passthrough_ll ...");
            var passthroughLl = await LibfusePassthroughLl.BuildAsync(Path.Combine(scratch, "build"));

            // cache=auto is passthrough_ll's default and matches nydusd's passthrough: 1 s entry/attr timeouts,
            // no keep_cache (the page cache is dropped on open), no writeback cache.
            await using var libfuse = await FuseServerProcess.StartAsync(Libfuse, libfuseMount, passthroughLl,
                ["-f", "-o", "source=" + backing, "-o", "cache=auto", libfuseMount]);
            await using var libfuseChecked = await FuseServerProcess.StartAsync(LibfuseChecked, libfuseCheckedMount, passthroughLl,
                ["-f", "-o", "source=" + backing, "-o", "cache=auto", "-o", "default_permissions", libfuseCheckedMount]);
            await using var nydus = await FuseServerProcess.StartAsync(Nydus, nydusMount, nydusd,
                ["--apisock", Path.Combine(scratch, "api.sock"), "--work-dir", Path.Combine(scratch, "nydus-work"),
                 "--mountpoint", nydusMount, "--shared-dir", backing, "--writable", "--thread-num", NydusThreads.ToString(CultureInfo.InvariantCulture),
                 "--log-level", "warn"]);
            // INIT is settled before the API mount, by an empty root: no FUSE_PASSTHROUGH (and the image flags).
            var fuseSocket = Path.Combine(scratch, "api-fuse.sock");
            await using var nydusFuse = await FuseServerProcess.StartAsync(NydusFuse, nydusFuseMount, nydusd,
                ["--apisock", fuseSocket, "--work-dir", Path.Combine(scratch, "nydus-fuse-work"),
                 "--mountpoint", nydusFuseMount, "--writable", "--thread-num", NydusThreads.ToString(CultureInfo.InvariantCulture),
                 "--log-level", "warn"]);
            await global::Nydus.Actors.Api.ApiClient.WaitForStateAsync(fuseSocket, "RUNNING", TimeSpan.FromSeconds(60), () => null);
            using (var api = new global::Nydus.Actors.Api.ApiClient(fuseSocket, TimeSpan.FromSeconds(60)))
            {
                var body = System.Text.Json.JsonSerializer.Serialize(new Dictionary<string, string>
                {
                    ["source"] = backing, ["fs_type"] = "passthrough_fs", ["config"] = "{\"writable\":true,\"kernel_passthrough\":false}",
                });
                var (status, answer) = await api.SendAsync("POST", "/api/v1/mount?mountpoint=/", body);
                if (status != 204) throw new InvalidOperationException($"mounting the passthrough through the API answered {status}: {answer}");
            }
            var roots = new Dictionary<string, string>
            {
                [Host] = backing, [Libfuse] = libfuseMount, [LibfuseChecked] = libfuseCheckedMount, [Nydus] = nydusMount, [NydusFuse] = nydusFuseMount,
            };

            for (var round = 0; round < Rounds; round++)
            {
                if (clock.Elapsed > Budget)
                {
                    failures.Add($"stopped after {round} of {Rounds} rounds: the {Budget.TotalMinutes} min budget was spent");
                    break;
                }
                // Rotate who goes first so drift (other builds on the shared cores, disk write-back) spreads evenly.
                for (var i = 0; i < Targets.Length; i++)
                {
                    var target = Targets[(i + round) % Targets.Length];
                    Console.WriteLine($"  round {round + 1}/{Rounds}: {target} ({clock.Elapsed.TotalSeconds:F0} s, load {File.ReadAllText("/proc/loadavg").Trim()})");
                    try
                    {
                        await MeasureAsync(Path.Combine(roots[target], $"work-{target.Replace(' ', '-')}"), (measure, value) =>
                        {
                            results[measure.Key][target][round] = value;
                            Console.WriteLine($"    {measure.Description}: {F(value)}");
                        });
                    }
                    catch (Exception e) when (e is IOException or InvalidOperationException or TimeoutException)
                    {
                        failures.Add($"round {round + 1}, {target}: {e.Message}");
                        Console.Error.WriteLine($"  round {round + 1}, {target} failed: {e}");
                    }
                }
                roundsRun++;
            }
            if (nydus.RecentOutput() is { Length: > 0 } nydusLog) Console.WriteLine($"  nydusd said:\n{nydusLog}");
        }
        finally
        {
            if (new[] { libfuseMount, libfuseCheckedMount, nydusMount, nydusFuseMount }.Any(MountTable.IsFuseMount))
                Console.Error.WriteLine($"  a mount under {scratch} is still there: leaving the folder in place");
            else
                Directory.Delete(scratch, recursive: true);
        }

        var report = Report(results, failures, roundsRun, commit, repoRoot);
        report.Note($"Total run {clock.Elapsed.TotalSeconds:F0} s on a 2-core machine shared with other engineers' builds and tests. " +
                    $"Load average (1/5/15 min) at the start: {loadBefore}; at the end: {File.ReadAllText("/proc/loadavg").Trim()}.");
        return report;
    }

    /// <summary>One pass of every measure on one target, in a work folder of its own under the target's root.</summary>
    private static async Task MeasureAsync(string work, Action<Measure, double> record)
    {
        Directory.CreateDirectory(work);
        var big = Path.Combine(work, "big.bin");
        try
        {
            KernelCaches.DropAll();
            var write = await Fio.RunAsync(big, "--rw=write", "--bs=1M", "--size=" + FileSize, "--end_fsync=1");
            // fio's own write bandwidth stops before the final fsync; the wall time of the run includes it.
            record(SequentialWrite, FileMiB / write.WallTime.TotalSeconds);

            KernelCaches.DropAll();
            var cold = await Fio.RunAsync(big, "--rw=read", "--bs=1M", "--size=" + FileSize);
            record(ColdRead, cold.ReadKiBPerSecond / 1024);

            // invalidate=0 keeps the host page cache the cold read filled; the FUSE mounts still go to their
            // server for every page because neither sets keep_cache, so the kernel drops their cache on open.
            var warm = await Fio.RunAsync(big, "--rw=read", "--bs=1M", "--size=" + FileSize, "--invalidate=0");
            record(WarmRead, warm.ReadKiBPerSecond / 1024);

            var random = await Fio.RunAsync(big, "--rw=randread", "--bs=4k", "--size=" + FileSize, "--io_size=32M", "--invalidate=0",
                $"--numjobs={RandomReadJobs}");
            record(RandomRead, random.ReadIops);
        }
        finally
        {
            File.Delete(big);
        }

        var churn = SmallFileChurn.Run(Path.Combine(work, "small"), SmallFiles);
        record(Create, SmallFiles / churn.Create.TotalSeconds);
        record(Stat, SmallFiles / churn.Stat.TotalSeconds);
        record(Unlink, SmallFiles / churn.Unlink.TotalSeconds);
        Directory.Delete(work);
    }

    private static BenchReport Report(Dictionary<string, Dictionary<string, double[]>> results, List<string> failures, int roundsRun, string commit, string repoRoot)
    {
        var report = new BenchReport("Passthrough mount: nydusd (with and without kernel passthrough) against the backing directory and libfuse passthrough_ll",
            ["measure", .. Targets, .. Ratios.Select(r => $"{r.Series} ÷ {r.Baseline}"), "aim"]);
        var points = new List<RatioPoint>();
        var date = DateTimeOffset.UtcNow;
        var load = BenchHistory.Load1();
        foreach (var measure in Measures)
        {
            var byTarget = results[measure.Key];
            var cells = new List<string> { measure.Description };
            cells.AddRange(Targets.Select(t => F(RoundStats.Median(byTarget[t]))));
            foreach (var (series, baseline) in Ratios)
            {
                var ratio = RoundStats.MedianRatio(byTarget[series], byTarget[baseline]);
                var aimed = series == Nydus && baseline == measure.AimBaseline && !double.IsNaN(measure.Aim);
                var cell = double.IsNaN(ratio) ? "n/a" : ratio.ToString("F2", CultureInfo.InvariantCulture) + "×";
                cells.Add(aimed && !double.IsNaN(ratio) ? cell + (ratio >= measure.Aim ? " ✅" : " ❌") : cell);
                if (!double.IsNaN(ratio))
                    points.Add(new RatioPoint(date, commit, load, measure.Key, series, baseline, ratio, aimed ? measure.Aim : double.NaN, false, RatioPlots.Interleaved));
            }
            cells.Add(double.IsNaN(measure.Aim) ? "" : $"{Nydus} ÷ {measure.AimBaseline} ≥ {measure.Aim.ToString("0.0", CultureInfo.InvariantCulture)}×");
            report.Add([.. cells]);
        }
        report.Note($"Medians of {roundsRun} interleaved rounds (each visits every target once; the first target rotates per round); each ratio is the " +
                    "median of the per-round ratios. Higher is better everywhere. ✅/❌: nydus (kernel passthrough) against issue 20's aim.");
        report.Note("libfuse: /usr/share/doc/libfuse3-dev/examples/passthrough_ll.c built with `cc -O2` against the installed fuse3, run as `passthrough_ll -f -o source=DIR -o cache=auto MNT` (its default: 1 s entry/attr timeout, no keep_cache, no writeback, xattrs off, multi-threaded loop with libfuse's default cap of 10 threads). It does not use FUSE passthrough. " +
                    "libfuse default_permissions: the same with `-o default_permissions`, the kernel-side permission checks nydusd mounts with (it serves every user as root, with allow_other): after each create or unlink the kernel refreshes the directory's attributes before the next one, one GETATTR more per file (counted with strace: per create LOOKUP, GETATTR, CREATE, WRITE, FLUSH, RELEASE against 5 without; per unlink LOOKUP, GETATTR, UNLINK, FORGET against 3).");
        report.Note($"nydus: the published nydusd, `--shared-dir DIR --writable --thread-num {NydusThreads}` (mounted with default_permissions and allow_other, 1 s entry/attr timeout, no keep_cache, no writeback), with FUSE passthrough (Linux 6.9+): opened files are read and written by the kernel from the host file.");
        report.Note($"nydus no kernel passthrough: the same nydusd with an empty root (`--mountpoint M --writable --thread-num {NydusThreads}`) and the directory mounted at / through the API with `{{\"writable\":true,\"kernel_passthrough\":false}}`: every read and write is a FUSE request (INIT was settled by the empty root: image flags).");
        report.Note($"fio 1 MiB sequential jobs use psync, direct=0, one {FileSize}iB file; write MiB/s is the file's size over the wall time of the fio run including its end_fsync; `sync; echo 3 > /proc/sys/vm/drop_caches` before the write and the cold read. Random reads: psync, {RandomReadJobs} jobs on the same file, 32 MiB each, after the cold read filled the host cache.");
        report.Note($"Small files: one thread calls open(O_CREAT|O_EXCL)+write 1 KiB+close, then lstat, then unlink directly (no .NET file APIs), in batches of 4,000 with `echo 2 > /proc/sys/vm/drop_caches` (untimed) before each batch: every lstat/unlink is a fresh LOOKUP, and the servers (one O_PATH descriptor per known inode) stay under this machine's RLIMIT_NOFILE of 20,000.");
        report.Note($"Sizes (512 MiB file, {SmallFiles:N0} small files; runs before 2026-12-07 12:00 UTC used 1 GiB and 20,000) keep {Rounds} rounds inside the {Budget.TotalMinutes} min budget on a loaded machine; no round starts after it.");
        report.Note("The backing dir is ext4 on a virtio disk.");
        foreach (var measure in Measures)
        {
            var runs = string.Join("; ", Targets.Select(t => $"{t} {string.Join(", ", results[measure.Key][t].Select(F))}"));
            report.Note($"All rounds, {measure.Description}: {runs}");
        }
        foreach (var failure in failures) report.Note($"FAILED {failure}");
        BenchHistory.Record(report, repoRoot, "passthrough", points);
        return report;
    }

    private static string F(double v) => double.IsNaN(v) ? "n/a" : v.ToString(v >= 100 ? "F0" : "F1", CultureInfo.InvariantCulture);
}
