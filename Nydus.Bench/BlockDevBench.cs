using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace Nydus.Bench;

/// <summary>
/// The block device (issue 17). On the host: <c>nbdcopy URI null:</c> throughput of <c>nydusd nbd</c> against
/// <c>nbdkit file</c> serving the same raw device (our <c>export --block</c> output), on a chunked
/// <c>mkfs.erofs --blobdev</c> image of 48 random 4 MiB files served from its two files: warm (page cache holds the
/// files), cold (page cache dropped before each copy: both read the disk) and, for nydusd only, cold with a new
/// process per copy (its config names a new blobcache work dir, but localfs blobs are read in place, so what this
/// adds is a fresh process: nothing of the image is held anywhere). In the test VM (scripts/vm, TCG): <c>tar</c> of a plain
/// EROFS image of /usr/lib/python3.11 on the guest kernel's EROFS over our NBD export (ioctl mode) vs our FUSE
/// mount of the same image, cold and warm. Rounds alternate between contenders; medians are reported.
/// </summary>
public static class BlockDevBench
{
    private const int Rounds = 5;
    private const int VmRounds = 3;
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(60);

    public static async Task<BenchReport> RunAsync(string nydusd, string repoRoot)
    {
        // On disk (not tmpfs) so that dropping caches really sends every contender to the device.
        string work = Path.Combine("/var/tmp", $"nydus-bench-blockdev-{Guid.NewGuid():N}");
        Directory.CreateDirectory(work);
        string load = File.ReadAllText("/proc/loadavg").Trim();
        try
        {
            var report = new BenchReport("Block device: nydusd nbd vs nbdkit file (nbdcopy), kernel EROFS over NBD vs FUSE (VM)",
                ["measure", "nydusd", "reference", "reference / nydusd time"]);
            await NbdCopyAsync(nydusd, work, report);
            // The VM rows take ~25 minutes under TCG: BENCH_BLOCKDEV_VM=0 leaves them out (the report says so).
            bool vm = Environment.GetEnvironmentVariable("BENCH_BLOCKDEV_VM") != "0";
            if (vm) GuestTar(nydusd, repoRoot, work, report);
            else report.Note("VM rows: not run this time (BENCH_BLOCKDEV_VM=0).");
            report.Note($"Load average at the start: {load}; at the end: {File.ReadAllText("/proc/loadavg").Trim()} (shared host: other engineers' builds and tests run at the same time, single rounds vary several times over).");
            report.Note("nbdcopy rows: reference = `nbdkit file -r` on the raw device our `export --block` wrote (the aim is a ratio >= 0.8). 'cold' drops the page cache before every copy; 'new nydusd process per copy' starts nydusd anew for each copy (nbdkit column: its cold time). The blobs are localfs files, read in place. 'cold registry': the data device pushed to a docker-registry on 127.0.0.1, served through the registry backend with a new blob cache dir and a new nydusd per copy, page cache dropped (nbdkit column: its cold time from local disk). '--threads 1': the export served one read at a time per connection (the behaviour before --threads; default 4), same rounds as the warm row.");
            if (vm) report.Note("VM rows: reference = our FUSE mount of the same image (nydusd in the guest); the nydusd column is the guest kernel's EROFS on /dev/nbd0 attached by `nydusd nbd /dev/nbd0` (ioctl mode). Times include the emulation (TCG), so only the ratio means something.");
            return report;
        }
        finally
        {
            Run("rm", "-rf", "--one-file-system", work);
        }
    }

    // ---- host: nbdcopy ------------------------------------------------------------------------------------

    private static async Task NbdCopyAsync(string nydusd, string work, BenchReport report)
    {
        string source = Directory.CreateDirectory(Path.Combine(work, "src")).FullName;
        var buffer = new byte[4 << 20];
        for (int i = 1; i <= 48; i++)
        {
            Random.Shared.NextBytes(buffer);
            File.WriteAllBytes(Path.Combine(source, "f" + i), buffer);
        }

        string meta = Path.Combine(work, "meta.erofs");
        string blob = Path.Combine(work, "blob.img");
        string raw = Path.Combine(work, "raw.img");
        Run("mkfs.erofs", "--quiet", "--chunksize=1048576", "--blobdev=" + blob, meta, source);
        string config = WriteConfig(work, "dummy.json", blob, cacheDir: null);
        Run(nydusd, "export", "--block", "--bootstrap", meta, "--config", config, "--output", raw);
        long size = new FileInfo(raw).Length;

        string ours = Path.Combine(work, "ours.sock");
        string kit = Path.Combine(work, "kit.sock");
        string serial = Path.Combine(work, "serial.sock");
        using Process server = Start(nydusd, "nbd", "--bootstrap", meta, "--config", config, "--nbd-socket", ours);
        // The same export served one read at a time per connection (what every connection did before --threads).
        using Process serialServer = Start(nydusd, "nbd", "--bootstrap", meta, "--config", config, "--nbd-socket", serial, "--threads", "1");
        using Process nbdkit = Start("nbdkit", "--foreground", "--unix", kit, "-r", "file", raw);
        try
        {
            await WaitForAsync(() => File.Exists(ours) && File.Exists(kit) && File.Exists(serial), "the NBD servers' sockets");
            string oursUri = $"nbd+unix:///default?socket={ours}";
            string serialUri = $"nbd+unix:///default?socket={serial}";
            string kitUri = $"nbd+unix:///?socket={kit}";
            TimeCopy(oursUri, size);
            TimeCopy(serialUri, size);
            TimeCopy(kitUri, size);
            var warm = (Ours: new List<double>(), Kit: new List<double>());
            var warmSerial = new List<double>();
            var cold = (Ours: new List<double>(), Kit: new List<double>());
            for (int round = 0; round < Rounds; round++)
            {
                warm.Ours.Add(TimeCopy(oursUri, size));
                warmSerial.Add(TimeCopy(serialUri, size));
                warm.Kit.Add(TimeCopy(kitUri, size));
                DropCaches();
                cold.Ours.Add(TimeCopy(oursUri, size));
                DropCaches();
                cold.Kit.Add(TimeCopy(kitUri, size));
            }

            var fresh = new List<double>();
            for (int round = 0; round < Rounds; round++)
            {
                string cacheDir = Path.Combine(work, "cache-" + round);
                string freshSocket = Path.Combine(work, "fresh.sock");
                string freshConfig = WriteConfig(work, $"fresh-{round}.json", blob, cacheDir);
                using Process freshServer = Start(nydusd, "nbd", "--bootstrap", meta, "--config", freshConfig, "--nbd-socket", freshSocket);
                try
                {
                    await WaitForAsync(() => File.Exists(freshSocket), "nydusd nbd with a fresh blob cache");
                    DropCaches();
                    fresh.Add(TimeCopy($"nbd+unix:///default?socket={freshSocket}", size));
                }
                finally
                {
                    BenchProcesses.Stop(freshServer);
                }
            }

            List<double> registry = await ColdRegistryAsync(nydusd, work, meta, blob, size);

            string mib = $"{size / 1048576.0:F0} MiB";
            Add(report, $"nbdcopy warm, {mib} (ms)", warm.Ours, warm.Kit);
            Add(report, $"nbdcopy warm, --threads 1: one read at a time per connection (ms)", warmSerial, warm.Kit);
            Add(report, $"nbdcopy cold (ms)", cold.Ours, cold.Kit);
            Add(report, $"nbdcopy cold, new nydusd process per copy (ms)", fresh, cold.Kit);
            Add(report, $"nbdcopy cold registry: blob in docker-registry, new blob cache and process per copy (ms)", registry, cold.Kit);
        }
        finally
        {
            BenchProcesses.Stop(server);
            BenchProcesses.Stop(serialServer);
            BenchProcesses.Stop(nbdkit);
        }
    }

    /// <summary>
    /// The same image with its data device in a docker-registry on 127.0.0.1 (the device slot's tag names the blob,
    /// as a nydus image names its blobs), served through the registry backend and a new, empty blob cache per copy:
    /// every block comes from the registry on first read.
    /// </summary>
    private static async Task<List<double>> ColdRegistryAsync(string nydusd, string work, string meta, string blob, long size)
    {
        string digest;
        using (var sha = System.Security.Cryptography.SHA256.Create())
        using (FileStream data = File.OpenRead(blob))
        {
            digest = Convert.ToHexStringLower(await sha.ComputeHashAsync(data));
        }

        string tagged = Path.Combine(work, "meta-registry.erofs");
        TagFirstDevice(meta, tagged, digest);
        int port = Registry.RegistryBench.FreePort();
        string host = $"127.0.0.1:{port}";
        using Process registry = Registry.RegistryBench.StartRegistry(work, port);
        try
        {
            await Registry.RegistryBench.PushAsync(host, blob, digest);
            var times = new List<double>();
            for (int round = 0; round < Rounds; round++)
            {
                string socket = Path.Combine(work, "registry.sock");
                string config = Path.Combine(work, $"registry-{round}.json");
                string cacheDir = Path.Combine(work, "registry-cache-" + round);
                File.WriteAllText(config,
                    "{\"version\":2,\"backend\":{\"type\":\"registry\",\"registry\":{\"scheme\":\"http\",\"host\":\"" + host
                    + "\",\"repo\":\"" + Registry.RegistryBench.Repo + "\",\"timeout\":30,\"connect_timeout\":5,\"retry_limit\":2}},"
                    + "\"cache\":{\"type\":\"blobcache\",\"filecache\":{\"work_dir\":\"" + cacheDir + "\"}},\"rafs\":{\"mode\":\"direct\"}}");
                using Process server = Start(nydusd, "nbd", "--bootstrap", tagged, "--config", config, "--nbd-socket", socket);
                try
                {
                    await WaitForAsync(() => File.Exists(socket), "nydusd nbd over the registry");
                    DropCaches();
                    times.Add(TimeCopy($"nbd+unix:///default?socket={socket}", size));
                }
                finally
                {
                    BenchProcesses.Stop(server);
                }
            }

            return times;
        }
        finally
        {
            registry.Kill(entireProcessTree: true);
            registry.WaitForExit(10_000);
        }
    }

    /// <summary>Copies a plain EROFS image naming its first extra device by <paramref name="tag"/> (the superblock checksum recomputed).</summary>
    private static void TagFirstDevice(string source, string target, string tag)
    {
        byte[] image = File.ReadAllBytes(source);
        const int sb = 1024;
        int slot = System.Buffers.Binary.BinaryPrimitives.ReadUInt16LittleEndian(image.AsSpan(sb + 88)) * 128;
        image.AsSpan(slot, 64).Clear();
        System.Text.Encoding.ASCII.GetBytes(tag).CopyTo(image, slot);
        if ((System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(image.AsSpan(sb + 8)) & 1) != 0 && slot < 4096)
        {
            // The superblock checksum covers [1024, 4096) of block 0 with the field zeroed.
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(image.AsSpan(sb + 4), 0);
            uint crc = Nydus.Actors.Storage.Digest.Crc32C.Update(0xFFFF_FFFFu, image.AsSpan(sb, 4096 - sb));
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(image.AsSpan(sb + 4), crc);
        }

        File.WriteAllBytes(target, image);
    }

    private static string WriteConfig(string work, string name, string blob, string? cacheDir)
    {
        string cache = cacheDir is null
            ? "{\"type\":\"dummycache\"}"
            : $"{{\"type\":\"blobcache\",\"filecache\":{{\"work_dir\":\"{cacheDir}\"}}}}";
        string path = Path.Combine(work, name);
        File.WriteAllText(path, $"{{\"version\":2,\"backend\":{{\"type\":\"localfs\",\"localfs\":{{\"blob_file\":\"{blob}\"}}}},\"cache\":{cache},\"rafs\":{{\"mode\":\"direct\"}}}}");
        return path;
    }

    private static double TimeCopy(string uri, long expectedBytes)
    {
        var clock = Stopwatch.StartNew();
        Run("nbdcopy", uri, "null:");
        double ms = clock.Elapsed.TotalMilliseconds;
        Console.WriteLine($"  nbdcopy {uri}: {ms:F0} ms ({expectedBytes / 1048576.0 / (ms / 1000):F0} MiB/s)");
        return ms;
    }

    // ---- VM: tar on kernel EROFS over NBD vs FUSE ------------------------------------------------------------

    private static void GuestTar(string nydusd, string repoRoot, string work, BenchReport report)
    {
        string tree = Path.Combine(work, "python");
        Run("cp", "-a", "/usr/lib/python3.11", tree);
        string image = Path.Combine(work, "python.erofs");
        Run("mkfs.erofs", "--quiet", image, tree);
        string exchange = Directory.CreateDirectory(Path.Combine(work, "vm-out")).FullName;
        string script = Path.Combine(work, "guest.sh");
        File.WriteAllText(script,
            $"""
            export NYDUSD='{nydusd}' IMAGE='{image}' LOCALFS_DIR='{work}' OUT='{exchange}' ROUNDS={VmRounds}
            exec bash '{Path.Combine(repoRoot, "scripts", "vm", "guest-bench.sh")}'

            """);
        BenchVm.Run(repoRoot, script, exchange, TimeSpan.FromSeconds(1500));
        string results = Path.Combine(exchange, "results");
        string[] lines = File.Exists(results) ? File.ReadAllLines(results) : [];
        if (lines.Length == 0) throw new InvalidOperationException("the bench VM wrote no results");

        var parsed = lines.Select(l => l.Split(' ')).ToArray();
        long bytes = long.Parse(parsed[0][3], CultureInfo.InvariantCulture);
        // Both mounts must have produced the same archive size, else one of them did not serve the whole tree.
        if (parsed.Any(p => long.Parse(p[3], CultureInfo.InvariantCulture) != bytes) || parsed.Select(p => p[0]).Distinct().Count() != 2)
        {
            throw new InvalidOperationException("the VM's tar runs differ in size or a contender is missing:\n" + string.Join("\n", lines));
        }

        foreach (string kind in new[] { "cold", "warm" })
        {
            List<double> Times(string contender) => parsed.Where(p => p[0] == contender && p[1] == kind)
                .Select(p => double.Parse(p[2], CultureInfo.InvariantCulture)).ToList();
            Add(report, $"VM tar {kind}, {bytes / 1048576.0:F0} MiB tar of /usr/lib/python3.11 (ms; reference = FUSE)", Times("nbd-erofs"), Times("fuse"));
        }
    }

    // ---- helpers -------------------------------------------------------------------------------------------

    private static void Add(BenchReport report, string measure, List<double> ours, List<double> reference)
    {
        double a = Median(ours), b = Median(reference);
        report.Add(measure, $"{a:F0} ({string.Join(", ", ours.Select(v => v.ToString("F0", CultureInfo.InvariantCulture)))})",
            $"{b:F0} ({string.Join(", ", reference.Select(v => v.ToString("F0", CultureInfo.InvariantCulture)))})",
            (b / a).ToString("F2", CultureInfo.InvariantCulture));
    }

    private static double Median(List<double> values)
    {
        var sorted = values.Order().ToArray();
        return sorted.Length == 0 ? double.NaN : sorted[sorted.Length / 2];
    }

    private static void DropCaches()
    {
        Run("sync");
        File.WriteAllText("/proc/sys/vm/drop_caches", "3");
    }

    private static async Task WaitForAsync(Func<bool> ready, string what)
    {
        var clock = Stopwatch.StartNew();
        while (!ready())
        {
            if (clock.Elapsed > StartTimeout) throw new TimeoutException($"{what} did not appear within {StartTimeout}");
            await Task.Delay(50);
        }
    }

    private static Process Start(string file, params string[] args)
    {
        var info = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in args) info.ArgumentList.Add(a);
        Process process = Process.Start(info)!;
        process.OutputDataReceived += (_, _) => { };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) Console.WriteLine($"    {Path.GetFileName(file)}: {e.Data}"); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return process;
    }

    private static string Run(string file, params string[] args)
    {
        var info = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in args) info.ArgumentList.Add(a);
        using Process process = Process.Start(info)!;
        Task<string> stdout = process.StandardOutput.ReadToEndAsync();
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromMinutes(5)))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{file} {string.Join(' ', args)} did not finish in 5 minutes");
        }

        process.WaitForExit();
        if (process.ExitCode != 0) throw new InvalidOperationException($"{file} {string.Join(' ', args)} exited {process.ExitCode}: {stderr.Result}");
        return stdout.Result;
    }
}
