using System.Diagnostics;
using System.Text.Json;
using Nydus.Actors.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace Nydus.Actors.Tests.Passthrough;

/// <summary>
/// Read throughput and metadata latency of this passthrough against libfuse's passthrough_ll example on the
/// same backing directory, with fio and a stat walk. Host page cache warm, FUSE page cache invalidated by
/// fio per job (its default invalidate=1). Run: NYDUS_FUSE_BENCHMARK=1 dotnet test --filter PassthroughBenchmark.
/// </summary>
public class PassthroughBenchmarkTests
{
    private const string Example = "/usr/share/doc/libfuse3-dev/examples/passthrough_ll.c";
    private const int SmallFiles = 5000;

    private readonly ITestOutputHelper _output;

    public PassthroughBenchmarkTests(ITestOutputHelper output) => _output = output;

    [FuseBenchmarkFact]
    public void Passthrough_against_passthrough_ll()
    {
        using var ours = FuseTestMount.StartPassthrough(writable: false, workers: 4, prepare: Fill);
        string libfuseMount = Path.Combine(ours.Root, "mnt-ll");
        Directory.CreateDirectory(libfuseMount);
        string binary = Path.Combine(ours.Root, "passthrough_ll");
        Run("gcc", ["-O2", Example, "-o", binary, "-I/usr/include/fuse3", "-lfuse3", "-lpthread"]);
        File.ReadAllBytes(ours.Backed("big.bin")); // warm the host page cache for both contenders

        using Process libfuse = Process.Start(new ProcessStartInfo(binary)
        {
            ArgumentList = { "-f", "-o", "source=" + ours.Backing, "-o", "max_threads=4", libfuseMount },
            RedirectStandardError = true,
        })!;
        try
        {
            WaitForMount(libfuseMount);
            var rows = new List<string> { "| contender | seq read 1M (MiB/s) | rand read 4k x4 (IOPS) | stat 5000 files cold (ms) |", "|---|---|---|---|" };
            foreach ((string name, string root) in new[] { ("Nydus.NET passthrough", ours.MountPoint), ("libfuse passthrough_ll", libfuseMount) })
            {
                double sequential = Fio(root, "--rw=read", "--bs=1M", "--numjobs=1").BandwidthKiB / 1024;
                double random = Fio(root, "--rw=randread", "--bs=4k", "--numjobs=4", "--io_size=64M").Iops;
                double stat = StatWalk(Path.Combine(root, "meta"));
                Assert.True(sequential > 0 && random > 0);
                rows.Add($"| {name} | {sequential:F0} | {random:F0} | {stat:F0} |");
            }

            foreach (string row in rows)
            {
                _output.WriteLine(row);
            }
        }
        finally
        {
            FuseTestMount.Detach(libfuseMount);
            if (!libfuse.WaitForExit(TimeSpan.FromSeconds(10)))
            {
                libfuse.Kill();
            }
        }
    }

    private static void Fill(string backing)
    {
        byte[] chunk = PassthroughMountTests.Pattern(1024 * 1024, 3);
        using (var stream = new FileStream(Path.Combine(backing, "big.bin"), FileMode.Create))
        {
            for (int i = 0; i < 1024; i++)
            {
                stream.Write(chunk);
            }
        }

        Directory.CreateDirectory(Path.Combine(backing, "meta"));
        for (int i = 0; i < SmallFiles; i++)
        {
            File.WriteAllBytes(Path.Combine(backing, "meta", $"f{i}"), []);
        }
    }

    private static double StatWalk(string directory)
    {
        var watch = Stopwatch.StartNew();
        int count = 0;
        foreach (string file in Directory.EnumerateFiles(directory))
        {
            Assert.Equal(Nydus.Actors.Interop.Errno.Success, FusePosix.LStat(file, out _));
            count++;
        }

        Assert.Equal(SmallFiles, count);
        return watch.Elapsed.TotalMilliseconds;
    }

    private static (double BandwidthKiB, double Iops) Fio(string root, params string[] job)
    {
        string json = Run("fio", ["--name=bench", "--filename=" + Path.Combine(root, "big.bin"), "--ioengine=psync",
            "--size=1G", "--group_reporting", "--output-format=json", .. job]);
        JsonElement read = JsonDocument.Parse(json[json.IndexOf('{')..]).RootElement.GetProperty("jobs")[0].GetProperty("read");
        return (read.GetProperty("bw").GetDouble(), read.GetProperty("iops").GetDouble());
    }

    private static void WaitForMount(string mountPoint)
    {
        DateTime deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (!File.ReadLines("/proc/self/mounts").Any(line => line.Split(' ')[1] == mountPoint))
        {
            Assert.True(DateTime.UtcNow < deadline, $"{mountPoint} was not mounted in time");
            Thread.Sleep(20);
        }
    }

    private static string Run(string tool, string[] arguments)
    {
        var start = new ProcessStartInfo(tool) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        using Process process = Process.Start(start)!;
        Task<string> output = process.StandardOutput.ReadToEndAsync();
        Task<string> error = process.StandardError.ReadToEndAsync();
        Assert.True(process.WaitForExit(TimeSpan.FromMinutes(3)), $"{tool} did not finish");
        Assert.True(process.ExitCode == 0, $"{tool} failed: {error.Result}");
        return output.Result;
    }
}
