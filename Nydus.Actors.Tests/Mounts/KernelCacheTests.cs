using System.Text.Json;
using Nydus.Actors.Tests.Support;
using Nydus.Actors.Vfs;
using Xunit;
using Xunit.Abstractions;

namespace Nydus.Actors.Tests.Mounts;

/// <summary>
/// Read-only images are cached by the kernel for as long as they are mounted (long entry and attribute timeouts,
/// no OPEN, kept pages and listings), so what a remount or an umount replaces must leave the kernel's caches at
/// once. A real nydusd, its mount API, and ordinary tools (cat, stat, ls, readlink) in separate processes.
/// </summary>
public sealed class KernelCacheTests(ITestOutputHelper output)
{
    /// <summary>Two versions of one tree: the same names with other bytes, sizes and link targets, and one name each alone.</summary>
    private static (string Image1, string Image2) TwoVersions(string dir)
    {
        string Make(string name, string same, string inner, string linkTarget, string only)
        {
            var source = Path.Combine(dir, name + "-src");
            Directory.CreateDirectory(Path.Combine(source, "dir"));
            File.WriteAllText(Path.Combine(source, "same.txt"), same);
            File.WriteAllText(Path.Combine(source, "dir", "inner.txt"), inner);
            File.WriteAllText(Path.Combine(source, only), only);
            File.WriteAllText(Path.Combine(source, "dir", only), only);
            File.CreateSymbolicLink(Path.Combine(source, "link"), linkTarget);
            var image = Path.Combine(dir, name + ".img");
            TreeBuilder.Run("mkfs.erofs", "--quiet", image, source);
            return image;
        }

        return (Make("v1", "version one", "inner one", "same.txt", "only-v1.txt"),
            Make("v2", "version two is longer", new string('2', 70_000), "dir/inner.txt", "only-v2.txt"));
    }

    private static string Tool(string tool, params string[] args) => TreeBuilder.Run(tool, args).TrimEnd('\n');

    /// <summary>Reads everything of version 1 at <paramref name="at"/> with ordinary tools, twice, so the kernel holds it.</summary>
    private static void ReadVersionOne(string at)
    {
        for (int pass = 0; pass < 2; pass++)
        {
            Assert.Equal("version one", Tool("cat", Path.Combine(at, "same.txt")));
            Assert.Equal("inner one", Tool("cat", Path.Combine(at, "dir", "inner.txt")));
            Assert.Equal("11", Tool("stat", "-c", "%s", Path.Combine(at, "same.txt")));
            Assert.Equal("same.txt", Tool("readlink", Path.Combine(at, "link")));
            Assert.Equal(["dir", "link", "only-v1.txt", "same.txt"], Tool("ls", "-1", at).Split('\n'));
            // Names only version 2 has, looked up by name: the kernel caches them as absent (negative entries).
            AssertGone(Path.Combine(at, "only-v2.txt"));
            AssertGone(Path.Combine(at, "dir", "only-v2.txt"));
        }
    }

    /// <summary>Right after the remount, with nothing waited for: only version 2 is visible.</summary>
    private static void AssertVersionTwo(string at)
    {
        Assert.Equal("version two is longer", Tool("cat", Path.Combine(at, "same.txt")));
        Assert.Equal(new string('2', 70_000), Tool("cat", Path.Combine(at, "dir", "inner.txt")));
        Assert.Equal("21", Tool("stat", "-c", "%s", Path.Combine(at, "same.txt")));
        Assert.Equal("dir/inner.txt", Tool("readlink", Path.Combine(at, "link")));
        Assert.Equal(["dir", "link", "only-v2.txt", "same.txt"], Tool("ls", "-1", at).Split('\n'));
        Assert.False(File.Exists(Path.Combine(at, "only-v1.txt")), "a name of the old image is still visible");
        // Looked up by name (not listed): what version 1 answered as absent must not hide them.
        Assert.Equal("only-v2.txt", Tool("cat", Path.Combine(at, "only-v2.txt")));
        Assert.Equal("only-v2.txt", Tool("cat", Path.Combine(at, "dir", "only-v2.txt")));
    }

    private static void AssertGone(string file)
    {
        var failure = Assert.Throws<InvalidOperationException>(() => Tool("stat", "-c", "%s", file));
        Assert.Contains("No such file or directory", failure.Message);
        Assert.Throws<InvalidOperationException>(() => Tool("cat", file));
    }

    [FuseTheory]
    [InlineData("/app")]
    [InlineData("/")]
    public async Task A_remount_and_an_umount_drop_what_the_kernel_cached_of_the_mountpoint(string mountpoint)
    {
        using var dir = new TempDir("kcache");
        var (v1, v2) = TwoVersions(dir.Path);
        var config = SmallImage.Config(dir.Path);
        await using var daemon = await NydusdApiDaemon.StartAsync(dir, "kcache-" + Guid.NewGuid().ToString("N")[..8]);
        string at = mountpoint == "/" ? daemon.MountPoint : Path.Combine(daemon.MountPoint, mountpoint.TrimStart('/'));

        Assert.Equal(204, (await daemon.MountAsync(mountpoint, v1, config)).Status);
        ReadVersionOne(at);

        var remount = await daemon.MountAsync(mountpoint, v2, config, method: "PUT");
        Assert.Equal(204, remount.Status);
        AssertVersionTwo(at);

        // And back: what version 2 left cached goes as well.
        Assert.Equal(204, (await daemon.MountAsync(mountpoint, v1, config, method: "PUT")).Status);
        ReadVersionOne(at);

        Assert.Equal(204, (await daemon.UmountAsync(mountpoint)).Status);
        AssertGone(Path.Combine(at, "same.txt"));
        AssertGone(Path.Combine(at, "dir", "inner.txt"));
        Assert.Equal("", Tool("ls", "-1", daemon.MountPoint));

        // Version 1 left names of version 2 cached as absent; a fresh mount of version 2 in the same place shows them.
        Assert.Equal(204, (await daemon.MountAsync(mountpoint, v2, config)).Status);
        AssertVersionTwo(at);
        Assert.Equal(204, (await daemon.UmountAsync(mountpoint)).Status);
        AssertGone(Path.Combine(at, "only-v2.txt"));
        Assert.False(daemon.Process.HasExited);
    }

    [FuseFact]
    public async Task Warm_reads_come_from_the_kernel_cache_and_stay_correct()
    {
        using var dir = new TempDir("kwarm");
        var image = SmallImage.Make(dir.Path, "w", seed: 77, files: 30);
        var config = SmallImage.Config(dir.Path);
        await using var daemon = await NydusdApiDaemon.StartAsync(dir, "kwarm-" + Guid.NewGuid().ToString("N")[..8]);
        Assert.Equal(204, (await daemon.MountAsync("/w", image.Image, config)).Status);
        string at = Path.Combine(daemon.MountPoint, "w");

        image.AssertServedAt(at);
        var before = await CountersAsync(daemon, "/w");

        // Many more passes: every byte stays right. The kernel answers them from its caches; a pass that still reached
        // the daemon (another engineer's bench may drop the page cache meanwhile) is retried, a few times at most.
        (long Reads, long Lookups, long Opens) after = before;
        for (int attempt = 0; attempt < 3; attempt++)
        {
            before = after;
            for (int pass = 0; pass < 20; pass++) image.AssertServedAt(at);
            after = await CountersAsync(daemon, "/w");
            output.WriteLine($"attempt {attempt}: reads {before.Reads} -> {after.Reads}, lookups {before.Lookups} -> {after.Lookups}, opens {after.Opens}");
            if (after == before) break;
        }

        Assert.Equal(before, after);
        // At most one OPEN reached the image: the kernel learns from its ENOSYS to open read-only images without asking.
        Assert.InRange(after.Opens, 0, 1);
    }

    [FuseFact]
    public async Task A_name_the_image_does_not_have_is_looked_up_once_and_appears_with_a_mount_under_it()
    {
        using var dir = new TempDir("kneg");
        var image = SmallImage.Make(dir.Path, "n", seed: 78, files: 3);
        var other = SmallImage.Make(dir.Path, "o", seed: 79, files: 2);
        var config = SmallImage.Config(dir.Path);
        await using var daemon = await NydusdApiDaemon.StartAsync(dir, "kneg-" + Guid.NewGuid().ToString("N")[..8]);
        Assert.Equal(204, (await daemon.MountAsync("/", image.Image, config)).Status);
        var missing = Path.Combine(daemon.MountPoint, "absent");

        var before = await CountersAsync(daemon, "/");
        for (int i = 0; i < 5; i++) AssertGone(missing);
        var after = await CountersAsync(daemon, "/");
        output.WriteLine($"lookups {before.Lookups} -> {after.Lookups} for 5 x (stat + cat) of a missing name");
        // One LOOKUP for ten tries (a page-cache drop by a concurrent bench could cost another; never one per try).
        Assert.InRange(after.Lookups - before.Lookups, 1, 2);

        // "absent" is cached as absent in the root image; a mount below it makes it a pseudo directory that must show.
        Assert.Equal(204, (await daemon.MountAsync("/absent/o", other.Image, config)).Status);
        other.AssertServedAt(Path.Combine(missing, "o"));
    }

    private static async Task<(long Reads, long Lookups, long Opens)> CountersAsync(NydusdApiDaemon daemon, string id)
    {
        var (status, body) = await daemon.Api.SendAsync("GET", "/api/v1/metrics?id=" + Uri.EscapeDataString(id));
        Assert.Equal(200, status);
        using var metrics = JsonDocument.Parse(body);
        var hits = metrics.RootElement.GetProperty("fop_hits").EnumerateArray().Select(e => e.GetInt64()).ToArray();
        return (hits[FsIoStats.Read], hits[FsIoStats.Lookup], hits[FsIoStats.Open]);
    }
}
