using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text.Json;
using Nydus.Actors.Tests.Support;
using Nydus.Actors.VirtioFs;
using Xunit;

namespace Nydus.Actors.Tests.VirtioFs;

/// <summary>
/// <c>nydusd virtiofs --apisock</c>: the virtio-fs service under the daemon's state machine and mount API, driven
/// through a real process with the test front-end in qemu's place. The API's mounts and the command line's instance
/// share one VFS, the one the guest's FUSE requests reach over the virtqueues: a mount added through the API is found
/// and read by LOOKUP and READ on a queue, and after its umount the name is gone (ENOENT); GET /api/v1/daemon shows
/// the state and the mount table, the metrics count per mount, exit and SIGTERM stop the daemon and remove its
/// socket, a restart on the same work dir mounts the journal's table again, and what virtio-fs cannot do (sendfd) is
/// refused with a clear answer.
/// </summary>
public sealed class VirtioFsDaemonApiTests
{
    private const int ENOENT = 2;
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(30);
    private const string LibRsMd5 = "4709cf8873e419ecedc7d43fdee4a75f"; // MANIFEST.md (V6): /lib.rs

    [Fact]
    public async Task An_api_mount_is_read_over_the_virtqueues_and_gone_after_its_umount_and_exit_removes_the_socket()
    {
        // No image on the command line: an empty root, filled through the API.
        await using var daemon = await VirtioFsDaemon.StartAsync(withApi: true);
        // RUNNING as soon as the socket accepts, before any VMM connected (upstream's virtiofs daemon does the same).
        Assert.Equal("RUNNING", (await daemon.DaemonInfoAsync()).GetProperty("state").GetString());

        using var guest = new VhostUserTestFrontend(daemon.Socket, VirtioFsDaemon.NewMemoryPath());
        guest.Start(queues: 2);
        Assert.Equal(0, guest.Call(1, FuseWire.Request(FuseWire.Init, 2, 0, FuseWire.InitBody()), 256).Error);
        Assert.Equal(-ENOENT, Lookup(guest, 1, "sub").Error);

        var mounted = await daemon.MountV6FixtureAsync("/sub");
        Assert.True(mounted.Status == 204, $"mount answered {mounted.Status}: {mounted.Body}");
        Assert.Equal(["/sub"], BackendMountpoints(await daemon.DaemonInfoAsync()));

        // The guest finds the API's mount in its tree and reads a file of it.
        var (subError, sub) = Lookup(guest, 1, "sub");
        Assert.Equal(0, subError);
        Assert.Equal(0x4000u, ModeOf(sub) & 0xF000u); // S_IFDIR
        Assert.Equal(LibRsMd5, ReadWhole(guest, NodeOf(sub), "lib.rs", 16931));

        // Per mount: the reads were counted against /sub.
        var (metricsStatus, metrics) = await daemon.Api!.SendAsync("GET", "/api/v1/metrics?id=/sub");
        Assert.Equal(200, metricsStatus);
        Assert.True(JsonDocument.Parse(metrics).RootElement.GetProperty("data_read").GetUInt64() >= 16931, metrics);

        // What virtio-fs cannot do is refused, and the daemon serves on.
        var (sendfdStatus, sendfd) = await daemon.Api.SendAsync("PUT", "/api/v1/daemon/fuse/sendfd");
        Assert.Equal(501, sendfdStatus);
        Assert.Contains("cannot hand over its vhost-user connection", sendfd);

        var umounted = await daemon.UmountAsync("/sub");
        Assert.True(umounted.Status == 204, $"umount answered {umounted.Status}: {umounted.Body}");
        Assert.Empty(BackendMountpoints(await daemon.DaemonInfoAsync()));
        Assert.Equal(-ENOENT, Lookup(guest, 1, "sub").Error);

        // Mounted again at another path: served again, on the same connection.
        Assert.Equal(204, (await daemon.MountV6FixtureAsync("/again")).Status);
        var (againError, again) = Lookup(guest, 1, "again");
        Assert.Equal(0, againError);
        Assert.Equal(LibRsMd5, ReadWhole(guest, NodeOf(again), "lib.rs", 16931));

        // Exit: the state machine stops, the VMM's connection ends and the socket is removed.
        var (exitStatus, exitBody) = await daemon.Api.SendAsync("PUT", "/api/v1/daemon/exit");
        Assert.True(exitStatus == 204, $"exit answered {exitStatus}: {exitBody}");
        Assert.Equal(0, await daemon.Process.WaitForExitAsync(Wait));
        Assert.True(guest.IsClosedByBackend(Wait), "the front-end's connection is still open after the daemon exited");
        Assert.False(File.Exists(daemon.Socket), "the vhost-user socket is left behind");
        Assert.Contains("Daemon state machine Ready --Exit--> Die", daemon.Process.Output);
    }

    [Fact]
    public async Task The_command_lines_image_and_api_mounts_share_the_guests_tree_and_sigterm_stops_cleanly()
    {
        await using var daemon = await VirtioFsDaemon.StartAsync(withApi: true, [.. VirtioFsDaemon.V6FixtureArgs, "--virtual-mountpoint", "/cmd"]);
        using var guest = new VhostUserTestFrontend(daemon.Socket, VirtioFsDaemon.NewMemoryPath());
        guest.Start(queues: 3);
        Assert.Equal(0, guest.Call(1, FuseWire.Request(FuseWire.Init, 2, 0, FuseWire.InitBody()), 256).Error);
        Assert.Equal(204, (await daemon.MountV6FixtureAsync("/api/v6")).Status);
        // One mount table: the command line's instance went through the daemon like the API's.
        Assert.Equal(["/api/v6", "/cmd"], BackendMountpoints(await daemon.DaemonInfoAsync()));

        var (cmdError, cmd) = Lookup(guest, 1, "cmd");
        Assert.Equal(0, cmdError);
        Assert.Equal(LibRsMd5, ReadWhole(guest, NodeOf(cmd), "lib.rs", 16931));
        // The API's instance, on the other request queue, below a pseudo directory.
        var (apiError, api) = Lookup(guest, 2, "api");
        Assert.Equal(0, apiError);
        var (v6Error, v6) = Lookup(guest, 2, "v6", NodeOf(api));
        Assert.Equal(0, v6Error);
        Assert.Equal(LibRsMd5, ReadWhole(guest, NodeOf(v6), "lib.rs", 16931, queue: 2));

        // A bad mount request is a clear 4xx; the table and the guest's reads are as they were.
        var (badStatus, badBody) = await daemon.MountAsync("/bad", Path.Combine(daemon.Dir, "missing.boot"),
            Nydus.Actors.Config.NydusConfigLoader.CreateLocalFsDirConfigText(ImageFixtures.UpstreamFile("blobs")));
        Assert.True(badStatus is >= 400 and < 500, $"a missing bootstrap answered {badStatus}: {badBody}");
        Assert.Contains("missing.boot", badBody);
        Assert.Equal(["/api/v6", "/cmd"], BackendMountpoints(await daemon.DaemonInfoAsync()));
        Assert.Equal(LibRsMd5, ReadWhole(guest, NodeOf(cmd), "lib.rs", 16931));

        // SIGTERM: through the state machine (terminate, then umount: the socket is closed and removed), exit code 0.
        daemon.Process.Signal(NydusdProcess.SIGTERM);
        Assert.Equal(0, await daemon.Process.WaitForExitAsync(Wait));
        Assert.True(guest.IsClosedByBackend(Wait), "the front-end's connection is still open after SIGTERM");
        Assert.False(File.Exists(daemon.Socket), "the vhost-user socket is left behind");
        Assert.Contains("Running --Stop--> Ready, action TerminateService", daemon.Process.Output);
        Assert.Contains("Ready --Stop--> Die, action Umount", daemon.Process.Output);
    }

    [Fact]
    public async Task A_restarted_daemon_mounts_the_api_mounts_its_journal_recorded_again_for_the_next_vmm()
    {
        using var state = new TempDir("virtiofs-state");
        string id = "vfs-" + Guid.NewGuid().ToString("N")[..8];
        await using (var first = await VirtioFsDaemon.StartAsync(withApi: true, state.Path, ["--id", id]))
        {
            Assert.Equal(204, (await first.MountV6FixtureAsync("/sub")).Status);
            first.Process.Signal(NydusdProcess.SIGTERM);
            Assert.Equal(0, await first.Process.WaitForExitAsync(Wait));
        }

        // Same id and work dir, no image on the command line: the journal's table is mounted again before it serves.
        await using var second = await VirtioFsDaemon.StartAsync(withApi: true, state.Path, ["--id", id]);
        Assert.Equal(["/sub"], BackendMountpoints(await second.DaemonInfoAsync()));
        using var guest = new VhostUserTestFrontend(second.Socket, VirtioFsDaemon.NewMemoryPath());
        guest.Start(queues: 2);
        Assert.Equal(0, guest.Call(1, FuseWire.Request(FuseWire.Init, 2, 0, FuseWire.InitBody()), 256).Error);
        var (subError, sub) = Lookup(guest, 1, "sub");
        Assert.Equal(0, subError);
        Assert.Equal(LibRsMd5, ReadWhole(guest, NodeOf(sub), "lib.rs", 16931));
    }

    private static string[] BackendMountpoints(JsonElement info) =>
        [.. info.GetProperty("backend_collection").EnumerateObject().Select(b => b.Name).Order(StringComparer.Ordinal)];

    private static ulong _unique = 100;

    private static (int Error, byte[] Entry) Lookup(VhostUserTestFrontend guest, int queue, string name, ulong parent = 1) =>
        guest.Call(queue, FuseWire.Request(FuseWire.Lookup, Interlocked.Add(ref _unique, 2), parent, FuseWire.Name(name)), 144);

    /// <summary>fuse_entry_out: nodeid first.</summary>
    private static ulong NodeOf(byte[] entry) => BinaryPrimitives.ReadUInt64LittleEndian(entry);

    /// <summary>fuse_entry_out: nodeid, generation, 2 valid + 2 nsec (40 bytes), then fuse_attr, whose mode is at +60.</summary>
    private static uint ModeOf(byte[] entry) => BinaryPrimitives.ReadUInt32LittleEndian(entry.AsSpan(40 + 60));

    /// <summary>LOOKUP of <paramref name="name"/> under <paramref name="directory"/>, OPEN, one READ of the whole file;
    /// its md5.</summary>
    private static string ReadWhole(VhostUserTestFrontend guest, ulong directory, string name, int size, int queue = 1)
    {
        var (error, entry) = Lookup(guest, queue, name, directory);
        Assert.Equal(0, error);
        ulong node = NodeOf(entry);
        Assert.Equal((ulong)size, BinaryPrimitives.ReadUInt64LittleEndian(entry.AsSpan(40 + 8)));
        // RAFS answers OPEN with ENOSYS, as upstream's (the kernel then reads with handle 0).
        var (openError, opened) = guest.Call(queue, FuseWire.Request(FuseWire.Open, Interlocked.Add(ref _unique, 2), node, FuseWire.OpenBody()), 16);
        Assert.True(openError is 0 or -38, $"OPEN answered {openError}");
        ulong handle = openError == 0 ? BinaryPrimitives.ReadUInt64LittleEndian(opened) : 0;
        var (readError, data) = guest.Call(queue, FuseWire.Request(FuseWire.Read, Interlocked.Add(ref _unique, 2), node,
            FuseWire.ReadBody(handle, 0, (uint)size)), size);
        Assert.Equal(0, readError);
        return Convert.ToHexStringLower(MD5.HashData(data));
    }
}
