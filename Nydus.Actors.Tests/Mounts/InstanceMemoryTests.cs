using Nydus.Actors.Interop;
using Nydus.Actors.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace Nydus.Actors.Tests.Mounts;

/// <summary>
/// Images are read in place, not loaded: a real nydusd with 100 instances of a 5,000-file plain EROFS image mounted
/// through the API, each walked, then all unmounted, in cycles. Anonymous memory (RssAnon of /proc/PID/status) per
/// instance stays small, and every instance's image file is closed at umount (and at remount). The daemon runs with
/// its GC heap capped (<see cref="HeapLimit"/>): the collector is lazy, so without a cap RssAnon keeps climbing for
/// a while even with nothing leaked (a step of ~40 MiB in the third cycle here), and could not tell a leak from
/// garbage; with the cap, memory that is really kept (as an image copy per instance was: 100 x 15 MiB) runs the
/// daemon out of memory and a mount or a read fails. Run time
/// 1-2 minutes on a quiet machine; more cycles are the memory bench's job (`bash build.sh Bench --suite=memory`).
/// </summary>
public sealed class InstanceMemoryTests(ITestOutputHelper output)
{
    private const int Instances = 100;
    private const int Cycles = 3;
    private const int Files = 5000;
    private const int Directories = 50;
    private const long HeapLimit = 160L << 20;

    [FuseFact]
    public async Task Hundred_instances_mounted_walked_and_unmounted_in_cycles_keep_anonymous_memory_bounded()
    {
        using var dir = new TempDir("instance-memory");
        string image = MakeImage(dir, Files);
        string config = SmallImage.Config(dir.Path);
        await using var daemon = await NydusdApiDaemon.StartAsync(dir, "memory-" + Guid.NewGuid().ToString("N")[..8],
            new Dictionary<string, string> { ["DOTNET_GCHeapHardLimit"] = "0x" + HeapLimit.ToString("x") });
        int pid = daemon.Process.Pid;
        long idle = RssAnon(pid);
        var mountedAnon = new List<long>();
        var unmountedAnon = new List<long>();

        for (int cycle = 0; cycle < Cycles; cycle++)
        {
            for (int i = 0; i < Instances; i++)
            {
                Assert.Equal(204, (await daemon.MountAsync($"/i{i}", image, config)).Status);
            }

            // A remount swaps in a fresh open of the image; the old one must be closed, not kept beside it.
            Assert.Equal(204, (await daemon.MountAsync("/i0", image, config, method: "PUT")).Status);
            await WaitForOpenCountAsync(pid, image, Instances);

            for (int i = 0; i < Instances; i++)
            {
                Walk(Path.Combine(daemon.MountPoint, $"i{i}"), full: i % 25 == 0);
            }

            mountedAnon.Add(RssAnon(pid));
            for (int i = 0; i < Instances; i++)
            {
                Assert.Equal(204, (await daemon.UmountAsync($"/i{i}")).Status);
            }

            await WaitForOpenCountAsync(pid, image, 0);
            unmountedAnon.Add(RssAnon(pid));
            output.WriteLine($"cycle {cycle}: RssAnon idle {Mb(idle)}, {Instances} mounted and walked {Mb(mountedAnon[^1])}, " +
                             $"all unmounted {Mb(unmountedAnon[^1])} MiB");
        }

        Assert.False(daemon.Process.HasExited);
        // Per instance, measured in the last cycle (the first one also warms the runtime up): a loaded image would
        // cost its whole size (this one is several MiB) per instance.
        double perInstance = (double)(mountedAnon[^1] - unmountedAnon[^2]) / Instances;
        output.WriteLine($"RssAnon per mounted instance: {perInstance / 1024:F0} KiB; image {new FileInfo(image).Length >> 10} KiB");
        Assert.True(perInstance < 2 << 20, $"{perInstance / 1024:F0} KiB of anonymous memory per instance (aim <= 2 MiB)");
        // Bounded: the heap cap plus what the runtime and native code hold (the idle level) is never exceeded.
        Assert.All(mountedAnon.Concat(unmountedAnon), anon => Assert.True(anon < idle + HeapLimit,
            $"RssAnon {Mb(anon)} MiB above idle {Mb(idle)} + heap cap {Mb(HeapLimit)} MiB"));
    }

    [FuseFact]
    public async Task An_image_truncated_while_mounted_answers_EIO_and_the_daemon_keeps_serving_it_and_others()
    {
        using var dir = new TempDir("truncated-image");
        SmallImage intact = SmallImage.Make(dir.Path, "intact", seed: 7);
        SmallImage victim = SmallImage.Make(dir.Path, "victim", seed: 8);
        string config = SmallImage.Config(dir.Path);
        await using var daemon = await NydusdApiDaemon.StartAsync(dir, "truncate-" + Guid.NewGuid().ToString("N")[..8]);
        Assert.Equal(204, (await daemon.MountAsync("/intact", intact.Image, config)).Status);
        Assert.Equal(204, (await daemon.MountAsync("/victim", victim.Image, config)).Status);
        string victimRoot = Path.Combine(daemon.MountPoint, "victim");
        var files = Directory.EnumerateFiles(victim.Source, "*", SearchOption.AllDirectories)
            .Select(f => Path.GetRelativePath(victim.Source, f)).ToArray();

        // Cut the image to its superblock block: no file data (and little metadata) is left behind the cut.
        using (var stream = new FileStream(victim.Image, FileMode.Open, FileAccess.Write))
        {
            stream.SetLength(4096);
        }

        int failed = 0;
        foreach (string relative in files)
        {
            Errno result = MountedFile.TryReadAll(Path.Combine(victimRoot, relative), out byte[] served);
            if (result == Errno.Success)
            {
                // Whatever is still served must be right (from pages read before the cut); nothing is made up.
                Assert.True(File.ReadAllBytes(Path.Combine(victim.Source, relative)).AsSpan().SequenceEqual(served),
                    $"{relative} read after the cut differs from the source");
                continue;
            }

            Assert.True(result == Errno.EIO, $"{relative}: {result}, expected EIO");
            failed++;
        }

        output.WriteLine($"{failed} of {files.Length} files failed after the cut");
        Assert.True(failed > 0, "no read failed after the image was cut to 4 KiB");
        Assert.False(daemon.Process.HasExited, "nydusd died reading a truncated image");
        intact.AssertServedAt(Path.Combine(daemon.MountPoint, "intact"));
        Assert.Equal(204, (await daemon.UmountAsync("/victim")).Status);
        Assert.Equal(["/intact"], await daemon.BackendMountpointsAsync());
    }

    /// <summary><paramref name="files"/> small files in 50 directories, seeded, as a plain EROFS image.</summary>
    internal static string MakeImage(TempDir dir, int files)
    {
        string source = dir.Combine("src");
        var random = new Random(20);
        for (int i = 0; i < files; i++)
        {
            string sub = Path.Combine(source, $"d{i % Directories}");
            Directory.CreateDirectory(sub);
            byte[] bytes = new byte[random.Next(0, 6000)];
            random.NextBytes(bytes);
            File.WriteAllBytes(Path.Combine(sub, $"f{i}"), bytes);
        }

        string image = dir.Combine("tree.erofs");
        TreeBuilder.Run("mkfs.erofs", "--quiet", image, source);
        return image;
    }

    /// <summary>Lists every directory (readdir); reads one file of each, or every file when <paramref name="full"/>.</summary>
    private static void Walk(string root, bool full)
    {
        int entries = 0;
        foreach (string sub in Directory.EnumerateDirectories(root))
        {
            string[] names = Directory.GetFiles(sub);
            entries += names.Length;
            foreach (string file in full ? names : names.Take(1))
            {
                Assert.Equal(Errno.Success, MountedFile.TryReadAll(file, out _));
            }
        }

        Assert.Equal(Files, entries);
    }

    /// <summary>Waits (bounded) until nydusd holds exactly <paramref name="expected"/> descriptors of the image.</summary>
    private static async Task WaitForOpenCountAsync(int pid, string image, int expected)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        int count;
        while ((count = OpenCount(pid, image)) != expected)
        {
            Assert.True(DateTime.UtcNow < deadline, $"nydusd holds {count} descriptors of {image}, expected {expected}");
            await Task.Delay(50);
        }
    }

    internal static int OpenCount(int pid, string image)
    {
        int count = 0;
        foreach (string fd in Directory.EnumerateFiles($"/proc/{pid}/fd"))
        {
            try
            {
                if (new FileInfo(fd).LinkTarget == image) count++;
            }
            catch (IOException)
            {
                // Closed while we looked.
            }
        }

        return count;
    }

    internal static long RssAnon(int pid)
    {
        foreach (string line in File.ReadLines($"/proc/{pid}/status"))
        {
            if (line.StartsWith("RssAnon:", StringComparison.Ordinal))
            {
                return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) * 1024;
            }
        }

        throw new InvalidOperationException($"no RssAnon in /proc/{pid}/status");
    }

    private static string Mb(long bytes) => (bytes / (1024.0 * 1024)).ToString("F1");
}
