using System.Text.Json;
using Nydus.Actors.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace Nydus.Actors.Tests.Mounts;

/// <summary>
/// Several images under one real nydusd through the mount API: mounted at virtual mountpoints of one FUSE mount, read
/// with ordinary file I/O, remounted under an open reader, unmounted while the others serve, listed by the daemon's
/// backend collection, refused with clear errors when the request is wrong, and mounted again by a new process on
/// the same --id and work dir.
/// </summary>
public sealed class MountApiTests(ITestOutputHelper output)
{
    [FuseFact]
    public async Task Three_images_mount_remount_under_a_reader_and_umount_while_the_others_serve()
    {
        using var dir = new TempDir("mapi");
        var a = SmallImage.Make(dir.Path, "a", seed: 1);
        var b = SmallImage.Make(dir.Path, "b", seed: 2);
        var c = SmallImage.Make(dir.Path, "c", seed: 3);
        var a2 = SmallImage.Make(dir.Path, "a2", seed: 4);
        var config = SmallImage.Config(dir.Path);
        await using var daemon = await NydusdApiDaemon.StartAsync(dir, "mapi-" + Guid.NewGuid().ToString("N")[..8]);

        Assert.Empty(await daemon.BackendMountpointsAsync());
        Assert.Equal(204, (await daemon.MountAsync("/a", a.Image, config)).Status);
        Assert.Equal(204, (await daemon.MountAsync("/b/c", b.Image, config)).Status);
        Assert.Equal(204, (await daemon.MountAsync("/d", c.Image, config)).Status);

        Assert.Equal(["/a", "/b/c", "/d"], await daemon.BackendMountpointsAsync());
        Assert.Equal(["a", "b", "d"], Directory.EnumerateFileSystemEntries(daemon.MountPoint).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        a.AssertServedAt(Path.Combine(daemon.MountPoint, "a"));
        b.AssertServedAt(Path.Combine(daemon.MountPoint, "b", "c"));
        c.AssertServedAt(Path.Combine(daemon.MountPoint, "d"));

        // A reader holds a file of /a open across the remount: it keeps reading the image it opened.
        var held = Path.Combine(daemon.MountPoint, "a", "a-f0.bin");
        var heldSource = Path.Combine(a.Source, "a-f0.bin");
        await using (var reader = new FileStream(held, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1))
        {
            var first = new byte[100];
            Assert.Equal(100, reader.Read(first));
            var remount = await daemon.MountAsync("/a", a2.Image, config, method: "PUT");
            Assert.Equal(204, remount.Status);

            using var rest = new MemoryStream();
            rest.Write(first);
            reader.CopyTo(rest);
            Assert.True(File.ReadAllBytes(heldSource).AsSpan().SequenceEqual(rest.ToArray()), "the file opened before the remount changed under its reader");
        }

        // A fresh open sees the new image; the others are as they were.
        a2.AssertServedAt(Path.Combine(daemon.MountPoint, "a"));
        Assert.False(File.Exists(held), "a file of the old image is still visible after the remount");
        b.AssertServedAt(Path.Combine(daemon.MountPoint, "b", "c"));

        Assert.Equal(204, (await daemon.UmountAsync("/b/c")).Status);
        Assert.Equal(["/a", "/d"], await daemon.BackendMountpointsAsync());
        Assert.Equal(["a", "d"], Directory.EnumerateFileSystemEntries(daemon.MountPoint).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        a2.AssertServedAt(Path.Combine(daemon.MountPoint, "a"));
        c.AssertServedAt(Path.Combine(daemon.MountPoint, "d"));
        Assert.False(daemon.Process.HasExited);
    }

    [FuseFact]
    public async Task Bad_requests_get_a_clear_4xx_and_leave_the_table_and_the_other_instances_alone()
    {
        using var dir = new TempDir("mbad");
        var a = SmallImage.Make(dir.Path, "a", seed: 11);
        var b = SmallImage.Make(dir.Path, "b", seed: 12);
        var config = SmallImage.Config(dir.Path);
        await using var daemon = await NydusdApiDaemon.StartAsync(dir, "mbad-" + Guid.NewGuid().ToString("N")[..8]);
        Assert.Equal(204, (await daemon.MountAsync("/a", a.Image, config)).Status);

        async Task Expect(int status, string code, string mention, Task<(int Status, string Body)> request)
        {
            var (got, body) = await request;
            output.WriteLine($"{got} {body}");
            Assert.Equal(status, got);
            using var error = JsonDocument.Parse(body);
            Assert.Equal(code, error.RootElement.GetProperty("code").GetString());
            Assert.Contains(mention, error.RootElement.GetProperty("message").GetString(), StringComparison.OrdinalIgnoreCase);
        }

        await Expect(409, "AlreadyExists", "/a", daemon.MountAsync("/a", b.Image, config));
        await Expect(409, "AlreadyExists", "/a", daemon.MountAsync("/a/x", b.Image, config));
        await Expect(404, "NotFound", "/zzz", daemon.UmountAsync("/zzz"));
        await Expect(404, "NotFound", "/zzz", daemon.MountAsync("/zzz", b.Image, config, method: "PUT"));
        await Expect(400, "BadRequest", "not absolute", daemon.MountAsync("rel", b.Image, config));
        await Expect(400, "BadRequest", "'..'", daemon.MountAsync("/x/../y", b.Image, config));
        await Expect(400, "BadRequest", "missing.img", daemon.MountAsync("/m", Path.Combine(dir.Path, "missing.img"), config));
        await Expect(400, "BadRequest", "config", daemon.MountAsync("/m", b.Image, "{\"version\":2, not json"));
        await Expect(400, "BadRequest", "fs_type", daemon.MountAsync("/m", b.Image, config, fsType: "erofs"));
        await Expect(400, "BadRequest", "mountpoint", daemon.Api.SendAsync("POST", "/api/v1/mount", "{\"source\":\"/x\",\"fs_type\":\"rafs\",\"config\":\"{}\"}"));
        await Expect(400, "BadRequest", "body", daemon.Api.SendAsync("POST", "/api/v1/mount?mountpoint=/m"));
        // Not an image at all: the source tree's first file.
        await Expect(400, "BadRequest", "a-f0.bin", daemon.MountAsync("/m", Path.Combine(a.Source, "a-f0.bin"), config));

        Assert.Equal(["/a"], await daemon.BackendMountpointsAsync());
        Assert.Equal(["a"], Directory.EnumerateFileSystemEntries(daemon.MountPoint).Select(Path.GetFileName));
        a.AssertServedAt(Path.Combine(daemon.MountPoint, "a"));
        Assert.False(daemon.Process.HasExited);
    }

    /// <summary>
    /// nydus-snapshotter POSTs every instance again after restarting or upgrading a shared daemon: the same source and
    /// config at a served mountpoint is 204 and changes nothing; the same image with another config is 204 and the new
    /// config is what serves (here: its per-file counters switched on); another image is still 409.
    /// </summary>
    [FuseFact]
    public async Task A_repeated_post_is_idempotent_and_a_new_config_for_the_same_image_is_taken()
    {
        using var dir = new TempDir("midem");
        var a = SmallImage.Make(dir.Path, "a", seed: 21);
        var b = SmallImage.Make(dir.Path, "b", seed: 22);
        var config = SmallImage.Config(dir.Path);
        var counting = config.Replace("\"rafs\":{\"mode\":\"direct\"}", "\"rafs\":{\"mode\":\"direct\",\"iostats_files\":true}");
        Assert.NotEqual(config, counting);
        await using var daemon = await NydusdApiDaemon.StartAsync(dir, "midem-" + Guid.NewGuid().ToString("N")[..8]);
        async Task<bool> FilesCounted()
        {
            var (status, body) = await daemon.Api.SendAsync("GET", "/api/v1/metrics?id=/a");
            Assert.Equal(200, status);
            return JsonDocument.Parse(body).RootElement.GetProperty("files_account_enabled").GetBoolean();
        }

        Assert.Equal(204, (await daemon.MountAsync("/a", a.Image, config)).Status);
        using (var open = File.OpenHandle(Directory.EnumerateFiles(Path.Combine(daemon.MountPoint, "a")).First()))
        {
            Assert.Equal((204, ""), await daemon.MountAsync("/a", a.Image, config));
            Assert.False(await FilesCounted());
            // An open file keeps reading across the idempotent POST (nothing was swapped under it).
            Assert.True(RandomAccess.Read(open, new byte[1], 0) == 1);
        }
        a.AssertServedAt(Path.Combine(daemon.MountPoint, "a"));

        Assert.Equal((204, ""), await daemon.MountAsync("/a", a.Image, counting));
        Assert.True(await FilesCounted());
        a.AssertServedAt(Path.Combine(daemon.MountPoint, "a"));
        var (conflict, body) = await daemon.MountAsync("/a", b.Image, config);
        Assert.Equal(409, conflict);
        Assert.Contains(a.Image, body);
        Assert.Equal(["/a"], await daemon.BackendMountpointsAsync());
        a.AssertServedAt(Path.Combine(daemon.MountPoint, "a"));
    }

    [FuseFact]
    public async Task A_new_process_with_the_same_id_and_work_dir_mounts_every_instance_again()
    {
        using var dir = new TempDir("mcold");
        var a = SmallImage.Make(dir.Path, "a", seed: 21);
        var b = SmallImage.Make(dir.Path, "b", seed: 22);
        var b2 = SmallImage.Make(dir.Path, "b2", seed: 23);
        var c = SmallImage.Make(dir.Path, "c", seed: 24);
        var config = SmallImage.Config(dir.Path);
        var id = "mcold-" + Guid.NewGuid().ToString("N")[..8];

        await using (var first = await NydusdApiDaemon.StartAsync(dir, id))
        {
            Assert.Equal(204, (await first.MountAsync("/a", a.Image, config)).Status);
            Assert.Equal(204, (await first.MountAsync("/x/b", b.Image, config)).Status);
            Assert.Equal(204, (await first.MountAsync("/x/b", b2.Image, config, method: "PUT")).Status);
            Assert.Equal(204, (await first.MountAsync("/c", c.Image, config)).Status);
            Assert.Equal(204, (await first.UmountAsync("/c")).Status);
            await first.StopAsync();
            Assert.False(NydusdMount.IsListedInMounts(first.MountPoint));
        }

        await using var second = await NydusdApiDaemon.StartAsync(dir, id, generation: 1);
        Assert.Equal(["/a", "/x/b"], await second.BackendMountpointsAsync());
        a.AssertServedAt(Path.Combine(second.MountPoint, "a"));
        b2.AssertServedAt(Path.Combine(second.MountPoint, "x", "b"));
        Assert.False(Directory.Exists(Path.Combine(second.MountPoint, "c")));
    }

    [FuseFact]
    public async Task Filesystem_metrics_count_what_each_mountpoint_served()
    {
        using var dir = new TempDir("mmet");
        var a = SmallImage.Make(dir.Path, "a", seed: 51);
        var b = SmallImage.Make(dir.Path, "b", seed: 52);
        var config = SmallImage.Config(dir.Path);
        await using var daemon = await NydusdApiDaemon.StartAsync(dir, "mmet-" + Guid.NewGuid().ToString("N")[..8]);
        Assert.Equal(204, (await daemon.MountAsync("/a", a.Image, config)).Status);
        Assert.Equal(204, (await daemon.MountAsync("/b", b.Image, config)).Status);

        a.AssertServedAt(Path.Combine(daemon.MountPoint, "a"));
        long expectedBytes = Directory.EnumerateFiles(a.Source, "*", SearchOption.AllDirectories).Sum(f => new FileInfo(f).Length);
        int files = Directory.EnumerateFiles(a.Source, "*", SearchOption.AllDirectories).Count();

        var (status, body) = await daemon.Api.SendAsync("GET", "/api/v1/metrics?id=/a");
        output.WriteLine(body);
        Assert.Equal(200, status);
        using (var metrics = JsonDocument.Parse(body))
        {
            var root = metrics.RootElement;
            Assert.Equal("/a", root.GetProperty("id").GetString());
            // AssertServedAt read every file once; FUSE may read a little past small files' ends, never less.
            Assert.InRange(root.GetProperty("data_read").GetInt64(), expectedBytes, expectedBytes * 2);
            // Images answer OPEN with ENOSYS once (the kernel then opens without asking), so reads, not opens, count files.
            Assert.True(root.GetProperty("block_count_read").EnumerateArray().Sum(e => e.GetInt64()) >= files, body);
            var hits = root.GetProperty("fop_hits").EnumerateArray().Select(e => e.GetInt64()).ToArray();
            Assert.Equal(15, hits.Length);
            // Names come from LOOKUP or, listed first, from READDIRPLUS (which spares the lookups).
            Assert.True((hits[9] > 0 || hits[11] > 0) && hits[4] > 0, "no lookups, listings or reads counted: " + body);
        }

        // /b served nothing yet; with two mounts a request without id names no single instance.
        (status, body) = await daemon.Api.SendAsync("GET", "/api/v1/metrics?id=/b");
        Assert.Equal(200, status);
        using (var metrics = JsonDocument.Parse(body)) Assert.Equal(0, metrics.RootElement.GetProperty("data_read").GetInt64());
        Assert.Equal(404, (await daemon.Api.SendAsync("GET", "/api/v1/metrics")).Status);
        Assert.Equal(404, (await daemon.Api.SendAsync("GET", "/api/v1/metrics?id=/zzz")).Status);
        Assert.Equal(204, (await daemon.UmountAsync("/b")).Status);
        Assert.Equal(404, (await daemon.Api.SendAsync("GET", "/api/v1/metrics?id=/b")).Status);
    }
}
