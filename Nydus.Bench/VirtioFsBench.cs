using System.Diagnostics;
using System.Globalization;
using Nydus.Bench.Memory;

namespace Nydus.Bench;

/// <summary>
/// virtio-fs in a VM (issue 21), in the test VM (scripts/vm, qemu TCG, Debian 6.1 kernel): one tree (a copy of
/// /usr/lib/python3.11 and a 64 MiB random file) reaches the guest five ways, all served from the host:
/// <c>nydusd virtiofs</c> with a RAFS v6 image of it, with a plain EROFS image of it, and with <c>--shared-dir</c> of the
/// directory (passthroughfs); qemu's built-in 9p export of the directory; and the plain EROFS image through
/// <c>nydusd nbd</c>, attached by qemu's NBD client as a virtio-blk disk that the guest kernel's EROFS mounts.
/// scripts/vm/guest-vfbench.sh measures, cold in the guest (its page cache dropped): <c>tar</c> of the tree, 1 MiB
/// sequential reads and 4 KiB random reads (fio) of the large file; rounds interleave the contenders; medians and
/// their ratios to 9p are reported.
/// </summary>
public static class VirtioFsBench
{
    private const int Rounds = 3;
    private const int BigFileBytes = 64 << 20;
    private const int RandomReadBytes = 8 << 20;
    private const string Reference = "9p";
    private static readonly string[] Contenders = ["virtiofs-rafs", "virtiofs-erofs", "virtiofs-passthrough", "9p", "nbd-erofs"];
    // BENCH_VIRTIOFS_ROUND_BUDGET=SECONDS: no round starts after that (1: a single round, for a quick check).
    private static readonly TimeSpan RoundBudget = TimeSpan.FromSeconds(
        int.TryParse(Environment.GetEnvironmentVariable("BENCH_VIRTIOFS_ROUND_BUDGET"), out int seconds) && seconds > 0 ? seconds : 1200);
    private static readonly TimeSpan VmTimeout = TimeSpan.FromMinutes(50);

    public static async Task<BenchReport> RunAsync(string nydusd, string repoRoot)
    {
        // BENCH_VIRTIOFS_RESULTS=FILE: the table of an earlier run's guest results file (its "results"), no VM.
        if (Environment.GetEnvironmentVariable("BENCH_VIRTIOFS_RESULTS") is { Length: > 0 } saved)
        {
            BenchReport again = Report(File.ReadAllLines(saved));
            again.Note($"Rendered from the saved guest results {saved} (BENCH_VIRTIOFS_RESULTS), not a new run; the notes below describe how that run was made. "
                + Environment.GetEnvironmentVariable("BENCH_VIRTIOFS_RUN_NOTE"));
            AddNotes(again, "(not recorded by the bench: see above)", "entries: see above");
            return again;
        }

        // On disk (not tmpfs), as the other image benches.
        string work = Path.Combine("/var/tmp", $"nydus-bench-virtiofs-{Guid.NewGuid():N}");
        Directory.CreateDirectory(work);
        string load = File.ReadAllText("/proc/loadavg").Trim();
        var daemons = new List<Process>();
        try
        {
            string source = Directory.CreateDirectory(Path.Combine(work, "src")).FullName;
            BenchProcesses.Run("cp", "-a", "/usr/lib/python3.11", Path.Combine(source, "python"));
            var big = new byte[BigFileBytes];
            Random.Shared.NextBytes(big);
            File.WriteAllBytes(Path.Combine(source, "big.bin"), big);
            string plain = Path.Combine(work, "tree.erofs");
            BenchProcesses.Run("mkfs.erofs", "--quiet", plain, source);
            string rafs = Path.Combine(work, "tree.rafsv6");
            string blobs = Directory.CreateDirectory(Path.Combine(work, "blobs")).FullName;
            RafsV6FromErofs.Build(source, rafs, blobs, (file, args) => BenchProcesses.Run(file, args));

            string Socket(string name) => Path.Combine(work, name + ".sock");
            // A plain EROFS image holds its data itself: the localfs dir is never read.
            daemons.Add(BenchProcesses.Start(nydusd, "virtiofs", "--sock", Socket("rafs"), "--bootstrap", rafs, "--localfs-dir", blobs));
            daemons.Add(BenchProcesses.Start(nydusd, "virtiofs", "--sock", Socket("erofs"), "--bootstrap", plain, "--localfs-dir", blobs));
            daemons.Add(BenchProcesses.Start(nydusd, "virtiofs", "--sock", Socket("passthrough"), "--shared-dir", source));
            daemons.Add(BenchProcesses.Start(nydusd, "nbd", "--bootstrap", plain, "--localfs-dir", blobs, "--nbd-socket", Socket("nbd")));
            await WaitForAsync(() => new[] { "rafs", "erofs", "passthrough", "nbd" }.All(n => File.Exists(Socket(n))), daemons);

            string exchange = Directory.CreateDirectory(Path.Combine(work, "vm-out")).FullName;
            string script = Path.Combine(work, "guest.sh");
            File.WriteAllText(script,
                $"""
                export TREE_DIR=python BIG_FILE=big.bin OUT='{exchange}' ROUNDS={Rounds} IO_SIZE={RandomReadBytes} ROUND_BUDGET={(int)RoundBudget.TotalSeconds}
                exec bash '{Path.Combine(repoRoot, "scripts", "vm", "guest-vfbench.sh")}'

                """);
            var clock = Stopwatch.StartNew();
            BenchVm.Run(repoRoot, script, exchange, VmTimeout, new Dictionary<string, string>
            {
                ["NYDUS_VM_VHOST_USER_FS"] = $"{Socket("rafs")} {Socket("erofs")} {Socket("passthrough")}",
                ["NYDUS_VM_NBD"] = Socket("nbd"),
                ["NYDUS_VM_9P_EXPORT"] = source,
            });
            Console.WriteLine($"  VM run: {clock.Elapsed.TotalMinutes:F1} min");
            string mounts = File.ReadAllText(Path.Combine(exchange, "mounts.log"));
            Console.WriteLine(mounts);
            var report = Report(File.ReadAllLines(Path.Combine(exchange, "results")));
            AddNotes(report, load, TreeEntries(mounts));
            return report;
        }
        finally
        {
            foreach (Process daemon in daemons)
            {
                BenchProcesses.Stop(daemon);
                daemon.Dispose();
            }

            BenchProcesses.Run("rm", "-rf", "--one-file-system", work);
        }
    }

    private static void AddNotes(BenchReport report, string load, string entries)
    {
        report.Note($"Load average at the start: {load}; at the end: {File.ReadAllText("/proc/loadavg").Trim()} (shared host: other engineers' builds and tests run at the same time).");
        report.Note($"Guest: Debian 6.1 kernel under qemu 7.2 TCG (no KVM here), 2 vCPUs, 2 GiB; times include the emulation, so only the ratios mean something. Tree: a copy of /usr/lib/python3.11 ({entries}) and a {BigFileBytes >> 20} MiB random file. "
            + $"Up to {Rounds} rounds (none starts after {RoundBudget.TotalSeconds:F0} s); each round runs every contender in turn; each measure is cold in the guest (sync, drop_caches before it), the host's page cache is warm for all alike.");
        report.Note("Contenders: virtiofs-rafs = `nydusd virtiofs` serving a RAFS v6 image of the tree (bootstrap + one uncompressed blob, Nydus.Bench/Memory/RafsV6FromErofs.cs, localfs); virtiofs-erofs = the same daemon serving a plain `mkfs.erofs` image of it; "
            + "virtiofs-passthrough = `nydusd virtiofs --shared-dir` of the directory (read-only); 9p = qemu's `-virtfs local,security_model=none,readonly=on` export of the directory, mounted `version=9p2000.L,cache=loose,msize=512000` (the test VM's own root mount options); "
            + "nbd-erofs = the plain EROFS image served by `nydusd nbd --nbd-socket`, attached by qemu's NBD client as a read-only virtio-blk disk, mounted by the guest kernel's EROFS (Linux 6.1's EROFS cannot mount a multi-blob image from one device, so this row uses the plain image). "
            + "All virtio-fs devices: vhost-user-fs-pci, queue-size 1024, 4 request queues offered (`--thread-num` default), the guest's default virtiofs mount options.");
        report.Note($"Measures: tar = `tar -cf - python | wc -c`; 1 MiB seq = `dd bs=1M` of the large file; 4 KiB random = fio randread, psync, {RandomReadBytes >> 20} MiB in 4 KiB reads at offsets of a fixed seed (fio's run time, its start-up excluded). "
            + "'9p / this' > 1: this contender took less time than 9p.");
    }

    private static BenchReport Report(string[] lines)
    {
        var parsed = lines.Select(l => l.Split(' ')).Where(p => p.Length == 4).ToArray();
        var report = new BenchReport("virtio-fs in a VM: nydusd virtiofs vs qemu 9p vs kernel EROFS over nydusd nbd (guest reads, qemu TCG)",
            ["measure", "contender", "median ms (rounds)", "9p / this"]);
        foreach ((string key, string title) in new[] { ("tar", "tar of the tree, cold"), ("seq1m", "1 MiB sequential reads, cold"), ("rand4k", "4 KiB random reads, cold") })
        {
            // Every contender must have moved the same bytes, else one of them did not serve the whole tree or file.
            // Whole rounds only: a round the VM did not finish (its time limit) is left out of this measure.
            string[][] all = parsed.Where(p => p[1] == key).ToArray();
            int rounds = all.Length / Contenders.Length;
            string[][] rows = all[..(rounds * Contenders.Length)];
            if (rounds == 0 || rows.Select(p => p[3]).Distinct().Count() != 1)
            {
                throw new InvalidOperationException($"the guest's {key} runs differ in size or some are missing:\n{string.Join("\n", lines)}");
            }

            double reference = Median(Times(rows, Reference));
            foreach (string contender in Contenders)
            {
                List<double> times = Times(rows, contender);
                double median = Median(times);
                report.Add($"{title}, {long.Parse(rows[0][3], CultureInfo.InvariantCulture) / 1048576.0:F0} MiB", contender,
                    $"{median:F0} ({string.Join(", ", times.Select(t => t.ToString("F0", CultureInfo.InvariantCulture)))})",
                    (reference / median).ToString("F2", CultureInfo.InvariantCulture));
            }
        }

        return report;
    }

    private static List<double> Times(string[][] rows, string contender) =>
        rows.Where(p => p[0] == contender).Select(p => double.Parse(p[2], CultureInfo.InvariantCulture)).ToList();

    private static double Median(List<double> values)
    {
        double[] sorted = values.Order().ToArray();
        if (sorted.Length == 0) return double.NaN;
        int middle = sorted.Length / 2;
        return sorted.Length % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
    }

    /// <summary>"N entries" from the guest's mounts.log line of the 9p mount.</summary>
    private static string TreeEntries(string mounts) =>
        mounts.Split('\n').FirstOrDefault(l => l.StartsWith(Reference + ":", StringComparison.Ordinal))?.Split(',')[0][(Reference.Length + 2)..] ?? "?";

    private static async Task WaitForAsync(Func<bool> ready, List<Process> daemons)
    {
        var clock = Stopwatch.StartNew();
        while (!ready())
        {
            if (daemons.FirstOrDefault(d => d.HasExited) is { } dead) throw new InvalidOperationException($"a nydusd exited with {dead.ExitCode} before serving");
            if (clock.Elapsed > TimeSpan.FromSeconds(60)) throw new TimeoutException("the nydusd sockets did not appear within 60 s");
            await Task.Delay(50);
        }
    }
}
