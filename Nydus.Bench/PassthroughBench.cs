using System.Globalization;
using Nydus.Bench.Passthrough;

namespace Nydus.Bench;

/// <summary>
/// The passthrough mount (nydusd --shared-dir --writable) against libfuse's passthrough_ll example and against the
/// backing directory itself, on the same machine in one run (issue 3): sequential 1 GiB write and read, random
/// 4 KiB reads (fio), and create+stat+unlink of 20,000 small files. Medians of interleaved repetitions; the ratio
/// column is nydus speed over libfuse speed, so the aim is a ratio of at least 1.00 on every row.
/// </summary>
public static class PassthroughBench
{
    private const int Repeats = 3;
    private const int SmallFiles = 20_000;
    private const int NydusThreads = 4;
    private const int RandomReadJobs = 4;

    private const string SequentialWrite = "sequential write 1 GiB, 1 MiB blocks, incl. final fsync (MiB/s)";
    private const string ColdRead = "sequential read 1 GiB, 1 MiB blocks, caches dropped (MiB/s)";
    private const string WarmRead = "sequential read 1 GiB, 1 MiB blocks, host page cache warm (MiB/s)";
    private const string RandomRead = "random read 4 KiB, 4 jobs x 64 MiB, host page cache warm (IOPS)";
    private const string Create = "create 20,000 files of 1 KiB (files/s)";
    private const string Stat = "lstat 20,000 files, dentries dropped (files/s)";
    private const string Unlink = "unlink 20,000 files, dentries dropped (files/s)";
    private static readonly string[] Measures = [SequentialWrite, ColdRead, WarmRead, RandomRead, Create, Stat, Unlink];

    private const string Host = "backing dir";
    private const string Libfuse = "libfuse";
    private const string Nydus = "nydus";

    /// <summary>The same passthrough served through FUSE alone (no FUSE_PASSTHROUGH): an empty-root daemon, mounted by the API.</summary>
    private const string NydusFuse = "nydus, no kernel passthrough";
    private static readonly string[] Targets = [Host, Libfuse, Nydus, NydusFuse];

    public static async Task<BenchReport> RunAsync(string nydusd, string repoRoot)
    {
        if (!Environment.IsPrivilegedProcess) throw new InvalidOperationException("the passthrough benchmark needs root (FUSE mounts, drop_caches)");
        if (!File.Exists("/dev/fuse")) throw new InvalidOperationException("the passthrough benchmark needs /dev/fuse");

        var scratch = Path.Combine(Path.GetTempPath(), $"nydus-bench-passthrough-{Guid.NewGuid():N}");
        var backing = Path.Combine(scratch, "backing");
        var libfuseMount = Path.Combine(scratch, "mnt-libfuse");
        var nydusMount = Path.Combine(scratch, "mnt-nydus");
        var nydusFuseMount = Path.Combine(scratch, "mnt-nydus-fuse");
        foreach (var dir in new[] { backing, libfuseMount, nydusMount, nydusFuseMount }) Directory.CreateDirectory(dir);

        var results = new Dictionary<string, Dictionary<string, List<double>>>();
        foreach (var measure in Measures) results[measure] = Targets.ToDictionary(t => t, _ => new List<double>());
        var failures = new List<string>();
        try
        {
            Console.WriteLine("  building passthrough_ll ...");
            var passthroughLl = await LibfusePassthroughLl.BuildAsync(Path.Combine(scratch, "build"));

            // cache=auto is passthrough_ll's default and matches nydusd's passthrough: 1 s entry/attr timeouts,
            // no keep_cache (the page cache is dropped on open), no writeback cache.
            await using var libfuse = await FuseServerProcess.StartAsync(Libfuse, libfuseMount, passthroughLl,
                ["-f", "-o", "source=" + backing, "-o", "cache=auto", libfuseMount]);
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
                [Host] = backing, [Libfuse] = libfuseMount, [Nydus] = nydusMount, [NydusFuse] = nydusFuseMount,
            };

            for (var repeat = 0; repeat < Repeats; repeat++)
            {
                // Rotate who goes first so drift (other builds on the shared cores, disk write-back) spreads evenly.
                for (var i = 0; i < Targets.Length; i++)
                {
                    var target = Targets[(i + repeat) % Targets.Length];
                    Console.WriteLine($"  run {repeat + 1}/{Repeats}: {target}");
                    try
                    {
                        await MeasureAsync(Path.Combine(roots[target], $"work-{target.Replace(' ', '-')}"), target, results);
                    }
                    catch (Exception e) when (e is IOException or InvalidOperationException or TimeoutException)
                    {
                        failures.Add($"run {repeat + 1}, {target}: {e.Message}");
                        Console.Error.WriteLine($"  run {repeat + 1}, {target} failed: {e}");
                    }
                }
            }
            if (nydus.RecentOutput() is { Length: > 0 } nydusLog) Console.WriteLine($"  nydusd said:\n{nydusLog}");
        }
        finally
        {
            if (MountTable.IsFuseMount(libfuseMount) || MountTable.IsFuseMount(nydusMount) || MountTable.IsFuseMount(nydusFuseMount))
                Console.Error.WriteLine($"  a mount under {scratch} is still there: leaving the folder in place");
            else
                Directory.Delete(scratch, recursive: true);
        }
        return Report(results, failures);
    }

    /// <summary>One pass of every measure on one target, in a work folder of its own under the target's root.</summary>
    private static async Task MeasureAsync(string work, string target, Dictionary<string, Dictionary<string, List<double>>> results)
    {
        Directory.CreateDirectory(work);
        var big = Path.Combine(work, "big.bin");
        try
        {
            KernelCaches.DropAll();
            var write = await Fio.RunAsync(big, "--rw=write", "--bs=1M", "--size=1G", "--end_fsync=1");
            // fio's own write bandwidth stops before the final fsync; the wall time of the run includes it.
            Record(results, SequentialWrite, target, 1024 / write.WallTime.TotalSeconds);

            KernelCaches.DropAll();
            var cold = await Fio.RunAsync(big, "--rw=read", "--bs=1M", "--size=1G");
            Record(results, ColdRead, target, cold.ReadKiBPerSecond / 1024);

            // invalidate=0 keeps the host page cache the cold read filled; the FUSE mounts still go to their
            // server for every page because neither sets keep_cache, so the kernel drops their cache on open.
            var warm = await Fio.RunAsync(big, "--rw=read", "--bs=1M", "--size=1G", "--invalidate=0");
            Record(results, WarmRead, target, warm.ReadKiBPerSecond / 1024);

            var random = await Fio.RunAsync(big, "--rw=randread", "--bs=4k", "--size=1G", "--io_size=64M", "--invalidate=0",
                $"--numjobs={RandomReadJobs}");
            Record(results, RandomRead, target, random.ReadIops);
        }
        finally
        {
            File.Delete(big);
        }

        var churn = SmallFileChurn.Run(Path.Combine(work, "small"), SmallFiles);
        Record(results, Create, target, SmallFiles / churn.Create.TotalSeconds);
        Record(results, Stat, target, SmallFiles / churn.Stat.TotalSeconds);
        Record(results, Unlink, target, SmallFiles / churn.Unlink.TotalSeconds);
        Directory.Delete(work);
    }

    private static void Record(Dictionary<string, Dictionary<string, List<double>>> results, string measure, string target, double value)
    {
        results[measure][target].Add(value);
        Console.WriteLine($"    {measure}: {F(value)}");
    }

    private static BenchReport Report(Dictionary<string, Dictionary<string, List<double>>> results, List<string> failures)
    {
        var report = new BenchReport("Passthrough mount: nydusd against libfuse passthrough_ll",
            ["measure", Host, Libfuse, Nydus, NydusFuse, "nydus/libfuse", "nydus/backing dir"]);
        foreach (var measure in Measures)
        {
            var byTarget = results[measure];
            var libfuse = Median(byTarget[Libfuse]);
            var nydus = Median(byTarget[Nydus]);
            var host = Median(byTarget[Host]);
            var ratio = double.IsNaN(libfuse) || double.IsNaN(nydus) ? "n/a" : (nydus / libfuse).ToString("F2", CultureInfo.InvariantCulture);
            var ofHost = double.IsNaN(host) || double.IsNaN(nydus) ? "n/a" : (nydus / host).ToString("F2", CultureInfo.InvariantCulture);
            report.Add(measure, F(host), F(libfuse), F(nydus), F(Median(byTarget[NydusFuse])), ratio, ofHost);
        }
        report.Note($"Medians of {Repeats} interleaved runs per target (order rotated each run); higher is better everywhere; nydus/libfuse >= 1.00 meets the aim.");
        report.Note($"libfuse: /usr/share/doc/libfuse3-dev/examples/passthrough_ll.c built with `cc -O2` against the installed fuse3, run as `passthrough_ll -f -o source=DIR -o cache=auto MNT` (its default: 1 s entry/attr timeout, no keep_cache, no writeback, xattrs off, multi-threaded loop with libfuse's default cap of 10 threads).");
        report.Note($"nydus: the published nydusd, `--shared-dir DIR --writable --thread-num {NydusThreads}` (1 s entry/attr timeout, no keep_cache, no writeback), with FUSE passthrough (Linux 6.9+): opened files are read and written by the kernel from the host file.");
        report.Note($"nydus, no kernel passthrough: the same nydusd with an empty root (`--mountpoint M --writable --thread-num {NydusThreads}`) and the directory mounted at / through the API with `{{\"writable\":true,\"kernel_passthrough\":false}}`: every read and write is a FUSE request (INIT was settled by the empty root: image flags).");
        report.Note("fio 1 MiB sequential jobs use psync, direct=0; write MiB/s is 1 GiB over the wall time of the fio run including its end_fsync; `sync; echo 3 > /proc/sys/vm/drop_caches` before the write and the cold read. Random reads: psync, 4 jobs on the same 1 GiB file, 64 MiB each, after the cold read filled the host cache.");
        report.Note($"Small files: one thread calls open(O_CREAT|O_EXCL)+write 1 KiB+close, then lstat, then unlink directly (no .NET file APIs), in batches of 4,000 with `echo 2 > /proc/sys/vm/drop_caches` (untimed) before each batch: every lstat/unlink is a fresh LOOKUP, and the servers (one O_PATH descriptor per known inode) stay under this machine's RLIMIT_NOFILE of 20,000, which root cannot raise here (no CAP_SYS_RESOURCE).");
        report.Note("The backing dir is ext4 on a virtio disk; the machine's 2 cores were shared with other helpers' builds and tests during the run, so expect noise of several per cent.");
        foreach (var measure in Measures)
        {
            var runs = string.Join("; ", Targets.Select(t => $"{t} {string.Join(", ", results[measure][t].Select(F))}"));
            report.Note($"All runs, {measure}: {runs}");
        }
        foreach (var failure in failures) report.Note($"FAILED {failure}");
        return report;
    }

    private static double Median(List<double> values)
    {
        if (values.Count == 0) return double.NaN;
        var sorted = values.Order().ToList();
        return sorted.Count % 2 == 1 ? sorted[sorted.Count / 2] : (sorted[sorted.Count / 2 - 1] + sorted[sorted.Count / 2]) / 2;
    }

    private static string F(double v) => double.IsNaN(v) ? "n/a" : v.ToString(v >= 100 ? "F0" : "F1", CultureInfo.InvariantCulture);
}
