using System.Diagnostics;
using Nydus.Actors.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace Nydus.Actors.Tests.Mounts;

/// <summary>
/// Nothing stays behind an instance once it is unmounted: a real nydusd mounts 100 instances of one small image through
/// its API, every one is walked (listed and every file read and compared) through the kernel mount, and all 100 are
/// unmounted, round after round: 10 rounds, 1,000 mount/walk/umount cycles of an instance (the issue's figure). After
/// each round the daemon's open descriptors, threads and anonymous resident memory are read from /proc; from the
/// second round on (the first warms the runtime, the JIT and the pools up) none of them may grow beyond a small slack:
/// a leak of one descriptor or one thread per cycle would show 900 times over, one of 32 KiB per cycle as 28 MiB.
/// The daemon runs with a 160 MiB managed heap cap, so a managed leak also ends in OutOfMemory (a failed mount).
/// </summary>
public sealed class MountCycleLeakTests(ITestOutputHelper output)
{
    private const int Instances = 100;
    private const int Rounds = 10;
    private const long HeapLimit = 160L << 20;
    // A bound on the run, not a timing assertion: a loaded machine runs fewer rounds, and at least MinimumRounds count.
    private static readonly TimeSpan Budget = TimeSpan.FromSeconds(150);
    private const int MinimumRounds = 4;
    private const int DescriptorSlack = 8, ThreadSlack = 6;
    private const long AnonSlack = 32L << 20;

    [FuseFact]
    public async Task Mounting_walking_and_unmounting_100_instances_in_rounds_leaks_no_descriptor_thread_or_memory()
    {
        using var dir = new TempDir("mount-leak");
        var (image, files) = TinyImage(dir);
        string config = SmallImage.Config(dir.Path);
        await using var daemon = await NydusdApiDaemon.StartAsync(dir, "leak-" + Guid.NewGuid().ToString("N")[..8],
            new Dictionary<string, string> { ["DOTNET_GCHeapHardLimit"] = "0x" + HeapLimit.ToString("x") });
        int pid = daemon.Process.Pid;
        var samples = new List<(int Descriptors, int Threads, long Anon)>();
        var clock = Stopwatch.StartNew();

        for (int round = 0; round < Rounds && (round < MinimumRounds || clock.Elapsed < Budget); round++)
        {
            for (int i = 0; i < Instances; i++)
                Assert.Equal(204, (await daemon.MountAsync($"/i{i}", image, config)).Status);
            for (int i = 0; i < Instances; i++)
                Walk(Path.Combine(daemon.MountPoint, $"i{i}"), files);
            for (int i = 0; i < Instances; i++)
                Assert.Equal(204, (await daemon.UmountAsync($"/i{i}")).Status);
            Assert.Empty(await daemon.BackendMountpointsAsync());

            var sample = await SettledSampleAsync(pid, image);
            samples.Add(sample);
            output.WriteLine($"round {round}: {clock.Elapsed.TotalSeconds:F0} s, fds {sample.Descriptors}, threads {sample.Threads}, " +
                             $"RssAnon {sample.Anon >> 20} MiB");
        }

        Assert.False(daemon.Process.HasExited);
        Assert.True(samples.Count >= MinimumRounds, $"only {samples.Count} rounds ran");
        output.WriteLine($"{samples.Count * Instances} instance cycles, load average {File.ReadAllText("/proc/loadavg").Trim()}");
        var baseline = samples[1];
        foreach (var (sample, round) in samples.Select((s, r) => (s, r)).Skip(2))
        {
            Assert.True(sample.Descriptors <= baseline.Descriptors + DescriptorSlack,
                $"round {round}: {sample.Descriptors} open descriptors, {baseline.Descriptors} after round 1");
            Assert.True(sample.Threads <= baseline.Threads + ThreadSlack,
                $"round {round}: {sample.Threads} threads, {baseline.Threads} after round 1");
            Assert.True(sample.Anon <= baseline.Anon + AnonSlack,
                $"round {round}: RssAnon {sample.Anon >> 20} MiB, {baseline.Anon >> 20} MiB after round 1");
        }
    }

    /// <summary>Forty small files in four directories, as a plain EROFS image; returns the image and each file's bytes.</summary>
    private static (string Image, Dictionary<string, byte[]> Files) TinyImage(TempDir dir)
    {
        var source = dir.Combine("src");
        var random = new Random(31);
        var files = new Dictionary<string, byte[]>();
        for (int i = 0; i < 40; i++)
        {
            var relative = Path.Combine($"d{i % 4}", $"f{i}");
            var bytes = new byte[random.Next(0, 9000)];
            random.NextBytes(bytes);
            Directory.CreateDirectory(Path.Combine(source, $"d{i % 4}"));
            File.WriteAllBytes(Path.Combine(source, relative), bytes);
            files[relative] = bytes;
        }
        var image = dir.Combine("tiny.erofs");
        TreeBuilder.Run("mkfs.erofs", "--quiet", image, source);
        return (image, files);
    }

    private static void Walk(string root, Dictionary<string, byte[]> files)
    {
        var listed = Directory.EnumerateFiles(root, "*", SearchOption.AllDirectories).Select(p => Path.GetRelativePath(root, p)).Order();
        Assert.Equal(files.Keys.Order(), listed);
        foreach (var (relative, bytes) in files)
            Assert.True(bytes.AsSpan().SequenceEqual(File.ReadAllBytes(Path.Combine(root, relative))), $"{relative} differs under {root}");
    }

    /// <summary>The daemon's counts once the last instance has closed its image (disposal follows the last lease).</summary>
    private static async Task<(int Descriptors, int Threads, long Anon)> SettledSampleAsync(int pid, string image)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (InstanceMemoryTests.OpenCount(pid, image) != 0)
        {
            Assert.True(DateTime.UtcNow < deadline, $"nydusd still holds {image} open 30 s after every umount");
            await Task.Delay(50);
        }
        int descriptors = Directory.EnumerateFileSystemEntries($"/proc/{pid}/fd").Count();
        int threads = Directory.EnumerateDirectories($"/proc/{pid}/task").Count();
        return (descriptors, threads, InstanceMemoryTests.RssAnon(pid));
    }
}
