using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using Nydus.Actors.Api;

namespace Nydus.Bench;

/// <summary>
/// Serving one image three ways: the kernel's EROFS driver, Debian's squashfuse on a squashfs image of the same
/// tree, and our nydusd over FUSE. The tree is ~5,500 real files copied from /usr (Python and Perl libraries) plus a
/// 1 GiB file of random bytes. Measured in one run, on each mount in turn: cold and warm full read of the small
/// files, cold and warm lstat of every entry, and fio random 4 KiB and sequential 1 MiB reads of the big file.
/// </summary>
public static partial class RafsBench
{
    private static readonly string[] SourceTrees = ["/usr/lib/python3.11", "/usr/lib/python3/dist-packages", "/usr/share/perl"];
    private const long BigFileSize = 1L << 30;
    private const string BigFileName = "big.bin";
    private static readonly TimeSpan MountTimeout = TimeSpan.FromSeconds(60);

    public static async Task<BenchReport> RunAsync(string nydusd, string repoRoot)
    {
        // On disk (not tmpfs) so that dropping caches makes every contender read its image from the device again.
        string work = Path.Combine("/var/tmp", $"nydus-bench-rafs-{Guid.NewGuid():N}");
        Directory.CreateDirectory(work);
        try
        {
            return await RunInAsync(work, nydusd);
        }
        finally
        {
            Run("rm", "-rf", "--one-file-system", work);
        }
    }

    private static async Task<BenchReport> RunInAsync(string work, string nydusd)
    {
        var clock = Stopwatch.StartNew();
        string source = Path.Combine(work, "src");
        Directory.CreateDirectory(source);
        foreach (string tree in SourceTrees)
        {
            // cp -a keeps symlinks as symlinks; nothing below ever follows one.
            Run("cp", "-a", tree, Path.Combine(source, Path.GetFileName(tree)));
        }

        WriteRandomFile(Path.Combine(source, BigFileName), BigFileSize);
        (List<string> smallFiles, List<string> allEntries, long smallBytes) = ListTree(source);
        Console.WriteLine($"  tree: {smallFiles.Count} regular files ({smallBytes / 1e6:F1} MB) + 1 GiB file, {allEntries.Count} entries; {clock.Elapsed.TotalSeconds:F0} s");

        string erofs = Path.Combine(work, "tree.erofs");
        string squashfs = Path.Combine(work, "tree.squashfs");
        Run("mkfs.erofs", "--quiet", erofs, source);
        // Uncompressed like the EROFS image, so all three read the same bytes from disk.
        Run("mksquashfs", source, squashfs, "-noI", "-noD", "-noF", "-noX", "-no-progress", "-quiet", "-processors", "2");
        Console.WriteLine($"  images built: {clock.Elapsed.TotalSeconds:F0} s");

        var contenders = new (string Name, Func<string, string, Task<Action>> Mount, string Image)[]
        {
            ("kernel erofs", (image, mnt) => Task.FromResult(MountKernel(image, mnt)), erofs),
            ("squashfuse", (image, mnt) => Task.FromResult(MountSquashfuse(image, mnt)), squashfs),
            ("nydusd", (image, mnt) => MountNydusdAsync(nydusd, image, mnt, work), erofs),
        };

        var results = new Dictionary<string, double[]>();
        string[] measures =
        [
            "cold full read (s)", "warm full read (s)", "cold lstat all (s)", "warm lstat all (s)",
            "fio randread 4K cold (MiB/s)", "fio randread 4K warm (MiB/s)", "fio seq read 1M cold (MiB/s)",
        ];
        foreach (string measure in measures) results[measure] = new double[contenders.Length];
        var requests = new Dictionary<string, string>();

        for (int c = 0; c < contenders.Length; c++)
        {
            string mnt = Path.Combine(work, "mnt-" + c);
            Directory.CreateDirectory(mnt);
            Action unmount = await contenders[c].Mount(contenders[c].Image, mnt);
            try
            {
                Console.WriteLine($"  {contenders[c].Name}: mounted");
                // nydusd's FUSE requests per measure, from its metrics (the kernel and squashfuse have no such counter).
                bool counted = contenders[c].Name == "nydusd";
                void Measure(int m, Func<double> run)
                {
                    long[] before = counted ? RequestCounts(work) : [];
                    results[measures[m]][c] = run();
                    if (counted) requests[measures[m]] = Difference(before, RequestCounts(work));
                }
                DropCaches();
                Measure(0, () => Time(() => ReadAll(mnt, smallFiles, smallBytes)));
                Measure(1, () => Time(() => ReadAll(mnt, smallFiles, smallBytes)));
                DropCaches();
                Measure(2, () => Time(() => LStatAll(mnt, allEntries)));
                Measure(3, () => Time(() => LStatAll(mnt, allEntries)));
                string big = Path.Combine(mnt, BigFileName);
                DropCaches();
                Measure(4, () => Fio(big, "randread", "4k", timeBased: true));
                Measure(5, () => Fio(big, "randread", "4k", timeBased: true));
                DropCaches();
                Measure(6, () => Fio(big, "read", "1M", timeBased: false));
                Console.WriteLine($"  {contenders[c].Name}: done, {clock.Elapsed.TotalSeconds:F0} s");
            }
            finally
            {
                unmount();
            }
        }

        var report = new BenchReport("RAFS/EROFS serving: kernel EROFS vs squashfuse vs nydusd (FUSE)",
            ["measure", "kernel erofs", "squashfuse", "nydusd", "nydusd/kernel", "nydusd/squashfuse", "nydusd FUSE requests"]);
        foreach (string measure in measures)
        {
            double[] v = results[measure];
            report.Add(measure, F(v[0]), F(v[1]), F(v[2]), F(v[2] / v[0]) + "x", F(v[2] / v[1]) + "x", requests.GetValueOrDefault(measure, "?"));
        }

        report.Note($"Tree: {smallFiles.Count} regular files, {smallBytes / 1e6:F1} MB, {allEntries.Count} entries "
            + $"(copies of {string.Join(", ", SourceTrees)}) plus a 1 GiB random file; images on disk under /var/tmp.");
        report.Note("Images: `mkfs.erofs` (plain, uncompressed) for the kernel and nydusd; `mksquashfs -noI -noD -noF -noX` for squashfuse.");
        report.Note("Cold = `echo 3 > /proc/sys/vm/drop_caches` right before. Full read: every small file read whole, one thread, 1 MiB reads. "
            + "lstat: every entry (files, dirs, symlinks). fio: psync, one job, random 4 KiB for 10 s time-based, sequential 1 MiB once through 1 GiB.");
        report.Note("Ratios: for times (s) above 1x means nydusd is slower; for MiB/s below 1x means nydusd is slower.");
        report.Note("nydusd reads the image in place (pread, a small page cache per instance): its cold rows read the disk like the others. " +
                    "Runs before 2026-12-07 loaded the whole image into nydusd's heap at mount, so their nydusd cold rows measured memory.");
        report.Note($"Total run {clock.Elapsed.TotalSeconds:F0} s on a shared 2-core machine ({Environment.ProcessorCount} cores visible); other builds may run beside it. " +
                    $"Load average at the end: {File.ReadAllText("/proc/loadavg").Trim()}.");
        return report;
    }

    private static readonly string[] OpNames =
        ["GETATTR", "READLINK", "OPEN", "RELEASE", "READ", "STATFS", "GETXATTR", "LISTXATTR", "OPENDIR", "LOOKUP", "READDIR",
         "READDIRPLUS", "ACCESS", "FORGET", "BATCH_FORGET"];

    /// <summary>nydusd's per-operation request counts for its instance at "/" (GET /api/v1/metrics: fop_hits).</summary>
    private static long[] RequestCounts(string work)
    {
        using var client = new ApiClient(Path.Combine(work, "api.sock"), TimeSpan.FromSeconds(10));
        var (status, body) = client.SendAsync("GET", "/api/v1/metrics?id=/").GetAwaiter().GetResult();
        if (status != 200) return [];
        using var doc = System.Text.Json.JsonDocument.Parse(body);
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

    private static Action MountKernel(string image, string mountPoint)
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

        return () =>
        {
            Detach(mountPoint);
            Run("losetup", "-d", loop);
        };
    }

    private static Action MountSquashfuse(string image, string mountPoint)
    {
        // squashfuse daemonizes once the mount is made; its process ends when the mount goes away.
        Run("squashfuse", image, mountPoint);
        return () => Detach(mountPoint);
    }

    private static async Task<Action> MountNydusdAsync(string nydusd, string image, string mountPoint, string work)
    {
        string socket = Path.Combine(work, "api.sock");
        string blobs = Path.Combine(work, "no-blobs");
        // nydusd's API host watches its working directory recursively; keep that away from the mountpoint.
        string cwd = Path.Combine(work, "nydusd-cwd");
        Directory.CreateDirectory(blobs);
        Directory.CreateDirectory(cwd);
        var info = new ProcessStartInfo(nydusd)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = cwd,
        };
        foreach (string a in new[]
                 {
                     "--apisock", socket, "-M", mountPoint, "--bootstrap", image, "--localfs-dir", blobs,
                     "--work-dir", Path.Combine(work, "nydusd-work"), "--log-level", "warn",
                 })
        {
            info.ArgumentList.Add(a);
        }

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

            Detach(mountPoint);
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

        return Stop;
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

    /// <summary>Relative paths of the small regular files and of every entry, from find(1) (which never follows symlinks).</summary>
    private static (List<string> Files, List<string> Entries, long Bytes) ListTree(string root)
    {
        var files = new List<string>();
        var entries = new List<string>();
        long bytes = 0;
        foreach (string line in Run("find", root, "-mindepth", "1", "-printf", @"%y %s %P\n").Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            string[] parts = line.Split(' ', 3);
            entries.Add(parts[2]);
            if (parts[0] == "f" && parts[2] != BigFileName)
            {
                files.Add(parts[2]);
                bytes += long.Parse(parts[1], CultureInfo.InvariantCulture);
            }
        }

        return (files, entries, bytes);
    }

    private static void ReadAll(string root, List<string> files, long expectedBytes)
    {
        var buffer = new byte[1 << 20];
        long total = 0;
        foreach (string file in files)
        {
            using var stream = new FileStream(Path.Combine(root, file), FileMode.Open, FileAccess.Read, FileShare.Read, 0);
            int n;
            while ((n = stream.Read(buffer, 0, buffer.Length)) > 0) total += n;
        }

        if (total != expectedBytes) throw new InvalidOperationException($"read {total} bytes under {root}, expected {expectedBytes}");
    }

    private static unsafe void LStatAll(string root, List<string> entries)
    {
        byte* statx = stackalloc byte[256];
        foreach (string entry in entries)
        {
            if (statx_native(-100 /* AT_FDCWD */, Path.Combine(root, entry), 0x100 /* AT_SYMLINK_NOFOLLOW */, 0x7FF, statx) != 0)
            {
                throw new IOException($"lstat {entry} under {root}: errno {Marshal.GetLastPInvokeError()}");
            }
        }
    }

    private static double Time(Action action)
    {
        var clock = Stopwatch.StartNew();
        action();
        return clock.Elapsed.TotalSeconds;
    }

    /// <summary>One fio job on the file; returns read bandwidth in MiB/s.</summary>
    private static double Fio(string file, string pattern, string blockSize, bool timeBased)
    {
        var args = new List<string>
        {
            "--name=bench", "--filename=" + file, "--readonly", "--rw=" + pattern, "--bs=" + blockSize,
            "--ioengine=psync", "--numjobs=1", "--size=" + BigFileSize, "--output-format=json", "--randrepeat=1",
        };
        if (timeBased)
        {
            args.Add("--runtime=10");
            args.Add("--time_based");
        }

        using JsonDocument json = JsonDocument.Parse(Run("fio", [.. args]));
        JsonElement read = json.RootElement.GetProperty("jobs")[0].GetProperty("read");
        return read.GetProperty("bw_bytes").GetDouble() / (1 << 20);
    }

    private static string Run(string file, params string[] args)
    {
        var info = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string a in args) info.ArgumentList.Add(a);
        using var process = Process.Start(info)!;
        Task<string> stdout = process.StandardOutput.ReadToEndAsync();
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(300_000))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{file} {string.Join(' ', args)} did not finish in 300 s");
        }

        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{file} {string.Join(' ', args)} exited {process.ExitCode}: {stderr.Result}");
        }

        return stdout.Result;
    }

    private static string F(double v) => v.ToString(v >= 100 ? "F0" : v >= 10 ? "F1" : "F2", CultureInfo.InvariantCulture);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int kill(int pid, int signal);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int umount2(string target, int flags);

    [LibraryImport("libc")]
    private static partial void sync();

    [LibraryImport("libc", EntryPoint = "statx", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial int statx_native(int dirFd, string path, int flags, uint mask, byte* buffer);
}
