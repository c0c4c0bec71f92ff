using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using Nydus.Actors.Api;
using Nydus.Bench.Memory;
using Nydus.Bench.Report;

namespace Nydus.Bench;

/// <summary>
/// Serving one read-only tree four ways, all mounted at once: the kernel's EROFS driver on a loop device, nydusd on
/// the same plain EROFS image, nydusd on a RAFS v6 bootstrap + blob of the same tree (localfs backend), and Debian's
/// squashfuse_ll on an uncompressed squashfs of it. The tree is ~5,500 real files copied from /usr (Python and Perl
/// libraries) plus a 1 GiB file of random bytes. The issue's workloads (`tar` of the small files, `find` stating
/// every entry, fio 4 KiB random and 1 MiB sequential reads of the big file) run in rounds: each round visits every
/// contender once, in an order rotated per round, and every ratio is taken against the kernel in the same round
/// before the median over rounds is reported. So load that comes and goes on the shared machine hits all contenders
/// alike, and a ratio is never two different minutes divided by each other.
/// </summary>
public static partial class RafsBench
{
    private const int Rounds = 3;
    private static readonly string[] SourceTrees = ["/usr/lib/python3.11", "/usr/lib/python3/dist-packages", "/usr/share/perl"];
    private const long BigFileSize = 1L << 30;
    private const string BigFileName = "big.bin";
    private const int FioSeconds = 5;
    private const int ColdWalks = 3;
    private const int WarmWalks = 20;
    private static readonly TimeSpan MountTimeout = TimeSpan.FromSeconds(60);
    private static readonly TimeSpan ToolTimeout = TimeSpan.FromSeconds(300);

    private const string Kernel = "kernel EROFS";
    private const string NydusErofs = "nydusd EROFS";
    private const string NydusRafs = "nydusd RAFS v6";
    private const string Squashfuse = "squashfuse_ll";
    private static readonly string[] Contenders = [Kernel, NydusErofs, NydusRafs, Squashfuse];

    /// <summary>A contender's mount: where it serves the tree, and nydusd's API socket (for its request counts).</summary>
    private sealed record Mounted(string Root, string? ApiSocket, Action Unmount);

    /// <summary>
    /// One workload. <paramref name="Cold"/>: caches are dropped right before it. <paramref name="Aim"/>: issue 20's
    /// target for the ratio to the kernel (a time at most Aim times the kernel's, or a rate at least Aim times its).
    /// </summary>
    private sealed record Workload(string Name, string Unit, bool LowerIsBetter, double Aim, bool Cold, Func<string, double> Run);

    public static async Task<BenchReport> RunAsync(string nydusd, string repoRoot)
    {
        if (!Environment.IsPrivilegedProcess) throw new InvalidOperationException("the rafs benchmark needs root (mounts, loop devices, drop_caches)");
        // On disk (not tmpfs) so that dropping caches makes every contender read its image from the device again.
        string work = Path.Combine("/var/tmp", $"nydus-bench-rafs-{Guid.NewGuid():N}");
        Directory.CreateDirectory(work);
        try
        {
            return await RunInAsync(work, nydusd, repoRoot);
        }
        finally
        {
            Run("rm", "-rf", "--one-file-system", work);
        }
    }

    private static async Task<BenchReport> RunInAsync(string work, string nydusd, string repoRoot)
    {
        var clock = Stopwatch.StartNew();
        string loadBefore = File.ReadAllText("/proc/loadavg").Trim();
        string commit = BenchHistory.CurrentCommit(repoRoot); // before the run: edits made while it runs are not what it measured
        string source = Path.Combine(work, "src");
        Directory.CreateDirectory(source);
        foreach (string tree in SourceTrees)
        {
            // cp -a keeps symlinks as symlinks; nothing below ever follows one.
            Run("cp", "-a", tree, Path.Combine(source, Path.GetFileName(tree)));
        }

        WriteRandomFile(Path.Combine(source, BigFileName), BigFileSize);
        (int smallFiles, int entries, long smallBytes) = CountTree(source);
        Console.WriteLine($"  tree: {smallFiles} regular files ({smallBytes / 1e6:F1} MB) + 1 GiB file, {entries} entries; {clock.Elapsed.TotalSeconds:F0} s");

        string erofs = Path.Combine(work, "tree.erofs");
        string squashfs = Path.Combine(work, "tree.squashfs");
        string rafs = Path.Combine(work, "tree.rafsv6");
        string blobs = Path.Combine(work, "blobs");
        Directory.CreateDirectory(blobs);
        Run("mkfs.erofs", "--quiet", erofs, source);
        // Uncompressed like the EROFS image, so all read the same bytes from disk.
        Run("mksquashfs", source, squashfs, "-noI", "-noD", "-noF", "-noX", "-no-progress", "-quiet", "-processors", "2");
        RafsV6FromErofs.Build(source, rafs, blobs, (file, args) => Run(file, args));
        Run("rm", "-rf", "--one-file-system", source); // every contender reads an image; the source is not needed any more
        Console.WriteLine($"  images built: {clock.Elapsed.TotalSeconds:F0} s");

        var tarBytes = new Dictionary<string, long>();
        Workload[] workloads =
        [
            new("cold tar", "s", true, 2.0, true, root => Time(() => tarBytes[root] = Tar(root))),
            new("warm tar", "s", true, 1.2, false, root => Time(() => tarBytes[root] = Tar(root))),
            // One walk takes 0.04-0.3 s here, too short to tell contenders apart on a shared machine: each row times
            // several walks (cold: caches dropped before each, the drop itself not timed) and reports their sum.
            new($"cold stat-all of {ColdWalks} walks", "s", true, 2.0, true, root => Repeat(ColdWalks, dropCaches: true, () => StatAll(root, entries))),
            new($"warm stat-all of {WarmWalks} walks", "s", true, 1.2, false, root => Repeat(WarmWalks, dropCaches: false, () => StatAll(root, entries))),
            new("4 KiB random read cold", "IOPS", false, 0.9, true, root => Fio(Path.Combine(root, BigFileName), "randread", "4k").Iops),
            new("4 KiB random read warm", "IOPS", false, 0.9, false, root => Fio(Path.Combine(root, BigFileName), "randread", "4k").Iops),
            new("1 MiB sequential read cold", "MiB/s", false, 0.9, true, root => Fio(Path.Combine(root, BigFileName), "read", "1M").MiBps),
        ];

        // values[workload][contender][round]; NaN where a run failed.
        var values = workloads.ToDictionary(w => w.Name, _ => Contenders.ToDictionary(c => c, _ => Enumerable.Repeat(double.NaN, Rounds).ToArray()));
        var requests = new Dictionary<(string Workload, string Contender), string>();
        var failures = new List<string>();
        var mounts = new Dictionary<string, Mounted>();
        try
        {
            mounts[Kernel] = MountKernel(erofs, MountPoint(work, Kernel));
            mounts[NydusErofs] = await MountNydusdAsync(nydusd, work, NydusErofs, ["--bootstrap", erofs, "--localfs-dir", Path.Combine(work, "no-blobs")]);
            mounts[NydusRafs] = await MountNydusdAsync(nydusd, work, NydusRafs, ["--bootstrap", rafs, "--localfs-dir", blobs]);
            mounts[Squashfuse] = MountSquashfuseLl(squashfs, MountPoint(work, Squashfuse));
            Console.WriteLine($"  all mounted: {clock.Elapsed.TotalSeconds:F0} s");

            for (int round = 0; round < Rounds; round++)
            {
                for (int i = 0; i < Contenders.Length; i++)
                {
                    string contender = Contenders[(i + round) % Contenders.Length];
                    Mounted mount = mounts[contender];
                    foreach (Workload workload in workloads)
                    {
                        try
                        {
                            if (workload.Cold) DropCaches();
                            long[] before = mount.ApiSocket is null ? [] : RequestCounts(mount.ApiSocket);
                            double value = workload.Run(mount.Root);
                            values[workload.Name][contender][round] = value;
                            if (mount.ApiSocket is not null) requests[(workload.Name, contender)] = Difference(before, RequestCounts(mount.ApiSocket));
                            Console.WriteLine($"  round {round + 1}/{Rounds}, {contender}, {workload.Name}: {F(value)} {workload.Unit}");
                        }
                        catch (Exception e) when (e is IOException or InvalidOperationException or TimeoutException or JsonException)
                        {
                            failures.Add($"round {round + 1}, {contender}, {workload.Name}: {e.Message}");
                            Console.Error.WriteLine($"  round {round + 1}, {contender}, {workload.Name} FAILED: {e}");
                        }
                    }
                }

                Console.WriteLine($"  round {round + 1} done: {clock.Elapsed.TotalSeconds:F0} s, load {File.ReadAllText("/proc/loadavg").Trim()}");
            }
        }
        finally
        {
            foreach (Mounted mount in mounts.Values)
            {
                try
                {
                    mount.Unmount();
                }
                catch (Exception e) when (e is IOException or InvalidOperationException or TimeoutException)
                {
                    Console.Error.WriteLine($"  unmounting {mount.Root} failed: {e.Message}");
                }
            }
        }

        string loadAfter = File.ReadAllText("/proc/loadavg").Trim();
        var report = new BenchReport("RAFS/EROFS serving: kernel EROFS vs nydusd (plain EROFS and RAFS v6) vs squashfuse_ll",
        [
            "workload", "aim vs kernel", Kernel, NydusErofs, NydusRafs, Squashfuse,
            NydusErofs + " ÷ kernel", NydusRafs + " ÷ kernel", Squashfuse + " ÷ kernel",
            "FUSE requests, " + NydusErofs, "FUSE requests, " + NydusRafs,
        ]);
        var points = new List<RatioPoint>();
        var date = DateTimeOffset.UtcNow;
        double load = double.Parse(loadAfter.Split(' ')[0], CultureInfo.InvariantCulture);
        foreach (Workload w in workloads)
        {
            var byContender = values[w.Name];
            string RatioCell(string contender)
            {
                double ratio = RoundStats.MedianRatio(byContender[contender], byContender[Kernel]);
                if (double.IsNaN(ratio)) return "n/a";
                bool met = w.LowerIsBetter ? ratio <= w.Aim : ratio >= w.Aim;
                string cell = $"{ratio.ToString("F2", CultureInfo.InvariantCulture)}×";
                // The aim is nydusd's; squashfuse_ll's ratio is shown for comparison only.
                return contender == Squashfuse ? cell : cell + (met ? " ✅" : " ❌");
            }

            report.Add(
                $"{w.Name} ({w.Unit})", $"{(w.LowerIsBetter ? "≤" : "≥")} {w.Aim.ToString("0.0", CultureInfo.InvariantCulture)}×",
                F(RoundStats.Median(byContender[Kernel])), F(RoundStats.Median(byContender[NydusErofs])), F(RoundStats.Median(byContender[NydusRafs])), F(RoundStats.Median(byContender[Squashfuse])),
                RatioCell(NydusErofs), RatioCell(NydusRafs), RatioCell(Squashfuse),
                requests.GetValueOrDefault((w.Name, NydusErofs), "?"), requests.GetValueOrDefault((w.Name, NydusRafs), "?"));
            foreach (string contender in new[] { NydusErofs, NydusRafs, Squashfuse })
            {
                double ratio = RoundStats.MedianRatio(byContender[contender], byContender[Kernel]);
                if (!double.IsNaN(ratio))
                {
                    points.Add(new RatioPoint(date, commit, load, w.Name, contender, Kernel, ratio,
                        contender == Squashfuse ? double.NaN : w.Aim, w.LowerIsBetter, RatioPlots.Interleaved));
                }
            }
        }

        report.Note($"Tree: {smallFiles} regular files, {smallBytes / 1e6:F1} MB, {entries} entries (copies of {string.Join(", ", SourceTrees)}) " +
                    $"plus a 1 GiB random file `{BigFileName}`; images on disk (ext4 on a virtio disk) under /var/tmp.");
        report.Note("Images: `mkfs.erofs` (plain, uncompressed) for the kernel (loop device, read-only) and for nydusd EROFS; " +
                    "RAFS v6 made from `mkfs.erofs --chunksize=1M --blobdev` (Nydus.Bench/Memory/RafsV6FromErofs.cs: bootstrap + one uncompressed blob, " +
                    "nydusd `--bootstrap B --localfs-dir BLOBS`, no blob cache); `mksquashfs -noI -noD -noF -noX` for squashfuse_ll. " +
                    "One nydusd process per image, defaults otherwise.");
        report.Note($"Workloads, in this order per contender: `tar -cf - --exclude=./{BigFileName} -C MNT .` into a pipe the bench drains " +
                    "(GNU tar skips reading file data when writing to /dev/null); `find MNT -printf '%s\\n'` (readdir of every directory and an " +
                    $"lstat of every entry; {ColdWalks} walks each dropping caches first, {WarmWalks} walks warm, their times summed); fio psync, one job, `--invalidate=0`, 4 KiB random reads of the 1 GiB file for {FioSeconds} s " +
                    "(cold, then warm: the warm run repeats the same offsets), then 1 MiB sequential reads once through it (cold).");
        report.Note("Cold = `sync; echo 3 > /proc/sys/vm/drop_caches` right before: the kernel's page, dentry and inode caches are empty for every " +
                    "contender, and nydusd holds no copy either: it reads the image (and the RAFS blob) in place with pread, keeping at most " +
                    "32 pages of 16 KiB of metadata per image in its own memory (ImagePageCache), which drop_caches does not empty. " +
                    "Runs before 2026-12-07 00:30 UTC loaded the whole image into nydusd's heap at mount, so their nydusd cold rows measured memory.");
        report.Note($"Interleaved: {Rounds} rounds, each visiting every contender once; the first contender of round r is the r-th of " +
                    $"[{string.Join(", ", Contenders)}], so each goes first once. Values are medians over rounds; each ratio is the median " +
                    "of the per-round ratios contender ÷ kernel of the same round. Times: above 1× is slower than the kernel; IOPS and MiB/s: " +
                    "below 1× is slower. ✅/❌: nydusd's ratio against issue 20's aim.");
        report.Note("FUSE requests: nydusd's own counters (GET /api/v1/metrics, fop_hits) around the workload in the last round; FORGETs left out " +
                    "(the cache drops make them). The kernel and squashfuse_ll have no such counter.");
        foreach (Workload w in workloads)
        {
            report.Note($"All rounds, {w.Name} ({w.Unit}): " +
                        string.Join("; ", Contenders.Select(c => $"{c} {string.Join(", ", values[w.Name][c].Select(F))}")));
        }

        if (tarBytes.Values.Distinct().Count() > 1)
        {
            report.Note("tar wrote different archive sizes on different mounts: " +
                        string.Join("; ", tarBytes.Select(kv => $"{Path.GetFileName(kv.Key)} {kv.Value}")));
        }

        foreach (string failure in failures) report.Note($"FAILED {failure}");
        report.Note($"Total run {clock.Elapsed.TotalSeconds:F0} s on a 2-core machine shared with other engineers' builds and tests. " +
                    $"Load average (1/5/15 min) at the start: {loadBefore}; at the end: {loadAfter}.");
        BenchHistory.Record(report, repoRoot, "rafs", points);
        return report;
    }

    private static string MountPoint(string work, string contender)
    {
        string path = Path.Combine(work, "mnt-" + contender.Replace(' ', '-'));
        Directory.CreateDirectory(path);
        return path;
    }

    private static readonly string[] OpNames =
        ["GETATTR", "READLINK", "OPEN", "RELEASE", "READ", "STATFS", "GETXATTR", "LISTXATTR", "OPENDIR", "LOOKUP", "READDIR",
         "READDIRPLUS", "ACCESS", "FORGET", "BATCH_FORGET"];

    /// <summary>nydusd's per-operation request counts for its instance at "/" (GET /api/v1/metrics: fop_hits).</summary>
    private static long[] RequestCounts(string socket)
    {
        using var client = new ApiClient(socket, TimeSpan.FromSeconds(10));
        var (status, body) = client.SendAsync("GET", "/api/v1/metrics?id=/").GetAwaiter().GetResult();
        if (status != 200) return [];
        using var doc = JsonDocument.Parse(body);
        return doc.RootElement.GetProperty("fop_hits").EnumerateArray().Select(e => e.GetInt64()).ToArray();
    }

    /// <summary>"total (OP n, ...)" of the requests between two counts; FORGETs left out (the cache drops make them).</summary>
    private static string Difference(long[] before, long[] after)
    {
        if (before.Length != after.Length || after.Length > OpNames.Length) return "?";
        var parts = new List<string>();
        long total = 0;
        for (int i = 0; i < after.Length; i++)
        {
            long n = after[i] - before[i];
            if (n == 0 || OpNames[i] is "FORGET" or "BATCH_FORGET") continue;
            total += n;
            parts.Add($"{OpNames[i]} {n}");
        }

        return total == 0 ? "0" : $"{total} ({string.Join(", ", parts)})";
    }

    private static Mounted MountKernel(string image, string mountPoint)
    {
        string loop = Run("losetup", "--find", "--show", "--read-only", image).Trim();
        try
        {
            Run("mount", "-t", "erofs", "-o", "ro", loop, mountPoint);
        }
        catch
        {
            Run("losetup", "-d", loop);
            throw;
        }

        return new Mounted(mountPoint, null, () =>
        {
            Detach(mountPoint);
            Run("losetup", "-d", loop);
        });
    }

    private static Mounted MountSquashfuseLl(string image, string mountPoint)
    {
        // squashfuse_ll daemonizes once the mount is made; its process ends when the mount goes away.
        Run("squashfuse_ll", image, mountPoint);
        return new Mounted(mountPoint, null, () => Detach(mountPoint));
    }

    private static async Task<Mounted> MountNydusdAsync(string nydusd, string work, string name, string[] imageArgs)
    {
        string slug = name.Replace(' ', '-');
        string mountPoint = MountPoint(work, name);
        string socket = Path.Combine(work, slug + ".sock");
        // nydusd's API host watches its working directory recursively; keep that away from the mountpoints.
        string cwd = Path.Combine(work, "cwd-" + slug);
        Directory.CreateDirectory(cwd);
        Directory.CreateDirectory(Path.Combine(work, "no-blobs"));
        var info = new ProcessStartInfo(nydusd)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = cwd,
        };
        foreach (string a in new[] { "--apisock", socket, "-M", mountPoint, "--work-dir", Path.Combine(work, "state-" + slug), "--log-level", "warn" }.Concat(imageArgs))
        {
            info.ArgumentList.Add(a);
        }

        var process = Process.Start(info)!;
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) Console.WriteLine($"    {name}: " + e.Data); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) Console.WriteLine($"    {name}: " + e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();

        void Stop()
        {
            if (!process.HasExited)
            {
                kill(process.Id, 15);
                if (!process.WaitForExit(20_000)) process.Kill(entireProcessTree: true);
            }

            Detach(mountPoint);
            process.Dispose();
        }

        try
        {
            using var api = new ApiClient(socket, TimeSpan.FromSeconds(10));
            await BenchProcesses.WaitRunningAsync(process, socket, api);
        }
        catch
        {
            Stop();
            throw;
        }

        return new Mounted(mountPoint, socket, Stop);
    }

    /// <summary>umount2(MNT_DETACH) until /proc/self/mounts no longer lists it; never stat()s the mountpoint.</summary>
    private static void Detach(string mountPoint)
    {
        var clock = Stopwatch.StartNew();
        while (File.ReadLines("/proc/self/mounts").Any(line => line.Split(' ')[1] == mountPoint))
        {
            umount2(mountPoint, 2 /* MNT_DETACH */);
            if (clock.Elapsed > MountTimeout) throw new TimeoutException($"{mountPoint} is still mounted");
            Thread.Sleep(10);
        }
    }

    private static void DropCaches()
    {
        sync();
        File.WriteAllText("/proc/sys/vm/drop_caches", "3");
    }

    private static void WriteRandomFile(string path, long size)
    {
        var buffer = new byte[4 << 20];
        var random = new Random(); // unseeded: the fast generator; the bytes only need to be incompressible
        using var stream = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None, 0);
        for (long done = 0; done < size; done += buffer.Length)
        {
            random.NextBytes(buffer);
            stream.Write(buffer, 0, (int)Math.Min(buffer.Length, size - done));
        }
    }

    /// <summary>Small regular files, all entries and the small files' bytes, from find(1) (which never follows symlinks).</summary>
    private static (int Files, int Entries, long Bytes) CountTree(string root)
    {
        int files = 0, entries = 0;
        long bytes = 0;
        foreach (string line in Run("find", root, "-mindepth", "1", "-printf", @"%y %s %P\n").Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            string[] parts = line.Split(' ', 3);
            entries++;
            if (parts[0] == "f" && parts[2] != BigFileName)
            {
                files++;
                bytes += long.Parse(parts[1], CultureInfo.InvariantCulture);
            }
        }

        return (files, entries, bytes);
    }

    /// <summary>tar of the small files into a pipe this process drains; returns the archive's size.</summary>
    private static long Tar(string root)
    {
        var info = new ProcessStartInfo("tar") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string a in new[] { "-cf", "-", "--exclude=./" + BigFileName, "-C", root, "." }) info.ArgumentList.Add(a);
        using var process = Process.Start(info)!;
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        // The pipe is drained on this thread; the timer bounds it by killing tar, which ends the stream.
        using var watchdog = new Timer(_ => { try { process.Kill(); } catch (InvalidOperationException) { } }, null, ToolTimeout, Timeout.InfiniteTimeSpan);
        var buffer = new byte[1 << 20];
        long total = 0;
        int n;
        Stream output = process.StandardOutput.BaseStream;
        while ((n = output.Read(buffer, 0, buffer.Length)) > 0) total += n;
        process.WaitForExit();
        if (process.ExitCode != 0) throw new InvalidOperationException($"tar of {root} exited {process.ExitCode}: {stderr.Result}");
        return total;
    }

    /// <summary>find stating every entry; the count of lines proves it saw the whole tree.</summary>
    private static void StatAll(string root, int expectedEntries)
    {
        int seen = Run("find", root, "-mindepth", "1", "-printf", @"%s\n").Count(c => c == '\n');
        if (seen != expectedEntries) throw new InvalidOperationException($"find saw {seen} entries under {root}, expected {expectedEntries}");
    }

    /// <summary>The summed time of <paramref name="times"/> runs of <paramref name="action"/>, each after a cache drop
    /// (not timed) when <paramref name="dropCaches"/>.</summary>
    private static double Repeat(int times, bool dropCaches, Action action)
    {
        double total = 0;
        for (int i = 0; i < times; i++)
        {
            if (dropCaches) DropCaches();
            total += Time(action);
        }

        return total;
    }

    private static double Time(Action action)
    {
        var clock = Stopwatch.StartNew();
        action();
        return clock.Elapsed.TotalSeconds;
    }

    /// <summary>One fio job on the file (time-based for random reads, once through for sequential); IOPS and MiB/s.</summary>
    private static (double Iops, double MiBps) Fio(string file, string pattern, string blockSize)
    {
        var args = new List<string>
        {
            "--name=bench", "--filename=" + file, "--readonly", "--rw=" + pattern, "--bs=" + blockSize, "--invalidate=0",
            "--ioengine=psync", "--numjobs=1", "--size=" + BigFileSize, "--output-format=json", "--randrepeat=1",
        };
        if (pattern == "randread")
        {
            args.Add($"--runtime={FioSeconds}");
            args.Add("--time_based");
        }

        using JsonDocument json = JsonDocument.Parse(Run("fio", [.. args]));
        JsonElement read = json.RootElement.GetProperty("jobs")[0].GetProperty("read");
        return (read.GetProperty("iops").GetDouble(), read.GetProperty("bw_bytes").GetDouble() / (1 << 20));
    }

    private static string Run(string file, params string[] args)
    {
        var info = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string a in args) info.ArgumentList.Add(a);
        using var process = Process.Start(info)!;
        Task<string> stdout = process.StandardOutput.ReadToEndAsync();
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(ToolTimeout))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{file} {string.Join(' ', args)} did not finish in {ToolTimeout.TotalSeconds} s");
        }

        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{file} {string.Join(' ', args)} exited {process.ExitCode}: {stderr.Result}");
        }

        return stdout.Result;
    }

    private static string F(double v) => double.IsNaN(v) ? "n/a" : v.ToString(v >= 100 ? "F0" : v >= 10 ? "F1" : "F2", CultureInfo.InvariantCulture);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int kill(int pid, int signal);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int umount2(string target, int flags);

    [LibraryImport("libc")]
    private static partial void sync();
}
