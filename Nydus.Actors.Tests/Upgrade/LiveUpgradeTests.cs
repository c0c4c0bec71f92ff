using System.Security.Cryptography;
using Nydus.Actors.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace Nydus.Actors.Tests.Upgrade;

/// <summary>
/// Live upgrade through upstream's supervisor sequence (§4.5) with real nydusd processes, a real FUSE mount of a
/// generated EROFS image and a test-side supervisor: readers never see a failure, an open file stays readable, and
/// bad inputs leave the serving daemon serving.
/// </summary>
[Collection("upgrade")]
public sealed class LiveUpgradeTests(ITestOutputHelper output)
{
    private const int Upgrades = 10;

    [FuseFact]
    public async Task Ten_live_upgrades_under_readers_lose_nothing()
    {
        await using var rig = await UpgradeRig.StartAsync();
        var big = rig.FileSizes.MaxBy(kv => kv.Value).Key;
        using var opened = File.OpenHandle(rig.MountPoint + big);
        var expected = File.ReadAllBytes(rig.Source + big);

        using var readers = new TreeReaders(rig.Tree, 4);
        readers.Start();
        await readers.AdvanceAsync(200, UpgradeRig.Wait);
        var pids = new List<int> { rig.Current.Pid };
        for (int i = 0; i < Upgrades; i++)
        {
            await rig.UpgradeAsync();
            pids.Add(rig.Current.Pid);
            // The file opened before the first upgrade reads correctly through every successor.
            TreeReaders.DropCache(opened);
            var offset = (i * 777_777L) % (expected.Length - 4096);
            var chunk = new byte[4096];
            Assert.Equal(4096, RandomAccess.Read(opened, chunk, offset));
            Assert.True(chunk.AsSpan().SequenceEqual(expected.AsSpan((int)offset, 4096)), $"open handle read at {offset} differs after upgrade {i + 1}");
            await readers.AdvanceAsync(100, UpgradeRig.Wait);
        }

        Assert.True(readers.Stop(UpgradeRig.Wait), "a reader is still blocked");
        output.WriteLine($"{Upgrades} upgrades, daemons {string.Join(" -> ", pids)}; {readers.Operations} reader operations, "
                         + $"{readers.FailureCount} failed; longest operation {readers.Longest.TotalMilliseconds:F1} ms ({readers.LongestWhat})");
        Assert.True(readers.FailureCount == 0, string.Join("\n", readers.Failures.Take(20)));
        Assert.Equal(Upgrades + 1, pids.Distinct().Count());
        Assert.Equal("RUNNING", await UpgradeRig.StateOfAsync(rig.CurrentSocket));
        Assert.Equal(Upgrades + 1, rig.Supervisor.Saves);
    }

    [FuseFact]
    public async Task Takeover_without_a_supervisor_is_refused_and_the_daemon_can_still_be_stopped()
    {
        await using var rig = await UpgradeRig.StartAsync();
        // Same mount, but this new daemon has no --supervisor: nowhere to take the fd from.
        var socket = rig.NextSocket();
        var args = rig.DaemonArgs(socket).ToList();
        var at = args.IndexOf("--supervisor");
        args.RemoveRange(at, 2);
        await using var lone = NydusdProcess.Start([.. args, "--upgrade"]);
        await lone.WaitForStateAsync(socket, "INIT", UpgradeRig.Wait);
        var (status, body) = await UpgradeRig.PutAsync(socket, "/api/v1/daemon/fuse/takeover");
        output.WriteLine($"takeover without --supervisor: {status} {body}");
        Assert.Equal(500, status);
        Assert.Contains("without --supervisor", body);
        Assert.Equal("INIT", await UpgradeRig.StateOfAsync(socket));
        (status, body) = await UpgradeRig.PutAsync(socket, "/api/v1/daemon/fuse/sendfd");
        Assert.Equal(500, status);
        Assert.Contains("without --supervisor", body);

        // Nothing lost: the old daemon still serves, and the lone one leaves without touching the mount.
        await AssertServesAsync(rig);
        UpgradeRig.Check(await UpgradeRig.PutAsync(socket, "/api/v1/daemon/exit"), "exit of the lone daemon");
        Assert.Equal(0, await lone.WaitForExitAsync(UpgradeRig.Wait));
        await AssertServesAsync(rig);
    }

    [FuseFact]
    public async Task Takeover_when_the_supervisor_has_no_fd_times_out_and_the_old_daemon_keeps_serving()
    {
        await using var rig = await UpgradeRig.StartAsync();
        // A supervisor that holds nothing: the restore connection gets no state and no fd.
        // Its own bound is longer than the daemon's (2 s), so the daemon's timeout is what ends the silent exchange.
        using var empty = new Nydus.Actors.Upgrade.SupervisorServer(rig.Supervisor.Path + ".empty", TimeSpan.FromSeconds(5));
        var socket = rig.NextSocket();
        var args = rig.DaemonArgs(socket).ToList();
        args[args.IndexOf("--supervisor") + 1] = empty.Path;
        var hocon = Path.Combine(Path.GetDirectoryName(rig.MountPoint)!, "short.conf");
        File.WriteAllText(hocon, "nydus.upgrade.transfer-timeout = 2s\n");
        await using var next = NydusdProcess.Start([.. args, "--upgrade", "--hocon", hocon]);
        await next.WaitForStateAsync(socket, "INIT", UpgradeRig.Wait);

        // Not told to serve a restore, the supervisor reads the connection as a save: both wait, the daemon's bound ends it.
        var (status, body) = await UpgradeRig.PutAsync(socket, "/api/v1/daemon/fuse/takeover");
        output.WriteLine($"takeover from a silent supervisor: {status} {body}");
        Assert.Equal(500, status);
        Assert.Contains("timed out", body);
        Assert.Equal("INIT", await UpgradeRig.StateOfAsync(socket));

        // The supervisor serves one connection at a time: let it give up on the silent one first.
        var deadline = DateTime.UtcNow + UpgradeRig.Wait;
        while (empty.LastError is null && DateTime.UtcNow < deadline) await Task.Delay(50);
        Assert.NotNull(empty.LastError);

        // Told to serve a restore but holding nothing: the daemon sees no descriptor.
        var served = empty.ServeNextRestore();
        (status, body) = await UpgradeRig.PutAsync(socket, "/api/v1/daemon/fuse/takeover");
        output.WriteLine($"takeover from an empty supervisor: {status} {body}");
        Assert.Equal(500, status);
        Assert.Contains("no descriptor", body);
        await Assert.ThrowsAnyAsync<Exception>(() => served.WaitAsync(UpgradeRig.Wait));
        Assert.Equal("INIT", await UpgradeRig.StateOfAsync(socket));

        await AssertServesAsync(rig);
        UpgradeRig.Check(await UpgradeRig.PutAsync(socket, "/api/v1/daemon/exit"), "exit of the failed successor");
        Assert.Equal(0, await next.WaitForExitAsync(UpgradeRig.Wait));
        await AssertServesAsync(rig);
        // The real supervisor still holds the old daemon's fd: a proper upgrade still works.
        await rig.UpgradeAsync();
        await AssertServesAsync(rig);
    }

    [FuseFact]
    public async Task A_new_binary_that_fails_to_start_leaves_the_old_daemon_serving()
    {
        await using var rig = await UpgradeRig.StartAsync();
        var socket = rig.NextSocket();
        var args = rig.DaemonArgs(socket).ToList();
        // The image the new binary is given does not exist: it fails before it could take anything over.
        args[args.IndexOf("--bootstrap") + 1] = rig.Image + ".missing";
        await using var broken = NydusdProcess.Start([.. args, "--upgrade"]);
        var code = await broken.WaitForExitAsync(UpgradeRig.Wait);
        output.WriteLine($"broken successor exited {code}");
        Assert.NotEqual(0, code);
        Assert.False(File.Exists(socket), "a failed start must not leave its API socket");
        await AssertServesAsync(rig);
        Assert.True(NydusdMount.IsListedInMounts(rig.MountPoint));
        Assert.Equal("RUNNING", await UpgradeRig.StateOfAsync(rig.CurrentSocket));
        await rig.UpgradeAsync();
        await AssertServesAsync(rig);
    }

    [FuseFact]
    public async Task A_second_takeover_racing_the_first_is_refused()
    {
        await using var rig = await UpgradeRig.StartAsync();
        var socket = rig.NextSocket();
        var next = rig.Launch(socket, upgrade: true);
        await next.WaitForStateAsync(socket, "INIT", UpgradeRig.Wait);
        var served = rig.Supervisor.ServeNextRestore();
        var first = UpgradeRig.PutAsync(socket, "/api/v1/daemon/fuse/takeover");
        var second = UpgradeRig.PutAsync(socket, "/api/v1/daemon/fuse/takeover");
        var answers = await Task.WhenAll(first, second);
        await served.WaitAsync(UpgradeRig.Wait);
        output.WriteLine($"racing takeovers: {answers[0].Status} {answers[0].Body} / {answers[1].Status} {answers[1].Body}");
        Assert.Single(answers, a => a.Status == 204);
        var refused = Assert.Single(answers, a => a.Status != 204);
        Assert.Equal(400, refused.Status);
        Assert.Contains("UnexpectedEvent", refused.Body);
        Assert.Equal("READY", await UpgradeRig.StateOfAsync(socket));

        // The race changed nothing for the rest of the sequence.
        UpgradeRig.Check(await UpgradeRig.PutAsync(rig.CurrentSocket, "/api/v1/daemon/exit"), "exit of the old daemon");
        Assert.Equal(0, await rig.Current.WaitForExitAsync(UpgradeRig.Wait));
        UpgradeRig.Check(await UpgradeRig.PutAsync(socket, "/api/v1/daemon/start"), "start of the new daemon");
        await next.WaitForStateAsync(socket, "RUNNING", UpgradeRig.Wait);
        await AssertServesAsync(rig);
    }

    /// <summary>
    /// Instances mounted through the API (recorded in the journal both processes share) are served by every successor
    /// at the same node ids: a file and directories opened before the upgrades (an image directory and the pseudo
    /// directory above the instance) keep working after each, and a fresh walk sees the same content.
    /// </summary>
    [FuseFact]
    public async Task Api_mounted_instances_and_open_handles_survive_upgrades()
    {
        await using var rig = await UpgradeRig.StartAsync();
        await rig.MountImageThroughApiAsync("/sub/img");
        // The handoff state is what the last sendfd saved: a supervisor saves it again after every mount, as
        // nydus-snapshotter does (SharedMount then SendStates).
        await rig.SendFdAsync();
        var big = rig.FileSizes.MaxBy(kv => kv.Value).Key;
        var expected = File.ReadAllBytes(rig.Source + big);
        using var file = File.OpenHandle(rig.MountPoint + "/sub/img" + big);
        using var imageDir = new DirectoryHandle(rig.MountPoint + "/sub/img/a");
        using var pseudoDir = new DirectoryHandle(rig.MountPoint + "/sub");
        Assert.Equal(rig.Directories["/a"], imageDir.ReadNames());
        Assert.Equal(["img"], pseudoDir.ReadNames());

        for (int i = 0; i < 2; i++)
        {
            await rig.UpgradeAsync();
            TreeReaders.DropCache(file);
            var chunk = new byte[4096];
            long offset = 12_345 + i * 100_000L;
            Assert.Equal(4096, RandomAccess.Read(file, chunk, offset));
            Assert.True(chunk.AsSpan().SequenceEqual(expected.AsSpan((int)offset, 4096)), $"open file differs after upgrade {i + 1}");
            Assert.Equal(rig.Directories["/a"], imageDir.ReadNames());
            Assert.Equal(["img"], pseudoDir.ReadNames());
            await AssertServesAsync(rig, "/sub/img");
        }

        using var client = new Nydus.Actors.Api.ApiClient(rig.CurrentSocket, UpgradeRig.Wait);
        var (infoStatus, info) = await client.SendAsync("GET", "/api/v1/daemon");
        Assert.Equal(200, infoStatus);
        Assert.Contains("/sub/img", info);
    }

    /// <summary>
    /// The handoff state carries the whole mount table, so a successor whose journal lacks an instance (here: started
    /// on an empty work dir, as if the journal were lost) still takes over and serves it; once it runs, its journal
    /// catches up: a daemon started afresh on that work dir mounts the instance again from it.
    /// </summary>
    [FuseFact]
    public async Task A_successor_on_an_empty_work_dir_serves_the_table_from_the_handoff_state_and_its_journal_catches_up()
    {
        await using var rig = await UpgradeRig.StartAsync();
        await rig.MountImageThroughApiAsync("/sub/img");
        await rig.SendFdAsync();
        var emptyWork = Path.Combine(Path.GetDirectoryName(rig.MountPoint)!, "empty-work");
        var socket = rig.NextSocket();
        var args = rig.DaemonArgs(socket).ToList();
        args[args.IndexOf("--work-dir") + 1] = emptyWork;
        await using var next = NydusdProcess.Start([.. args, "--upgrade"]);
        await next.WaitForStateAsync(socket, "INIT", UpgradeRig.Wait);

        await rig.TakeoverAsync(socket);
        await next.WaitForStateAsync(socket, "READY", UpgradeRig.Wait);
        UpgradeRig.Check(await UpgradeRig.PutAsync(rig.CurrentSocket, "/api/v1/daemon/exit"), "exit of the old daemon");
        Assert.Equal(0, await rig.Current.WaitForExitAsync(UpgradeRig.Wait));
        UpgradeRig.Check(await UpgradeRig.PutAsync(socket, "/api/v1/daemon/start"), "start of the successor");
        await next.WaitForStateAsync(socket, "RUNNING", UpgradeRig.Wait);
        await AssertServesAsync(rig);
        await AssertServesAsync(rig, "/sub/img");

        // Once it runs, the successor writes the table it took over into its journal (in the background: it may
        // still be recovering the fresh journal). Then SIGTERM unmounts, and a plain start on the successor's work
        // dir finds /sub/img in the journal it wrote.
        await next.WaitForOutputAsync("The journal is this daemon's now", UpgradeRig.Wait);
        Assert.Contains("The journal is this daemon's now: 2 change(s)", next.Output);
        next.Signal(NydusdProcess.SIGTERM);
        Assert.Equal(0, await next.WaitForExitAsync(UpgradeRig.Wait));
        var again = rig.NextSocket();
        var restartArgs = rig.DaemonArgs(again).ToList();
        restartArgs[restartArgs.IndexOf("--work-dir") + 1] = emptyWork;
        await using var restarted = NydusdProcess.Start([.. restartArgs]);
        await restarted.WaitForStateAsync(again, "RUNNING", UpgradeRig.Wait);
        // A supervised start serves before its journal has recovered, and mounts what it records right after.
        await restarted.WaitForOutputAsync("Journal caught up after the start", UpgradeRig.Wait);
        await AssertServesAsync(rig, "/sub/img");
        restarted.Signal(NydusdProcess.SIGTERM);
        Assert.Equal(0, await restarted.WaitForExitAsync(UpgradeRig.Wait));
    }

    /// <summary>
    /// A successor that cannot open an instance of the handoff state (its image was moved away after the old daemon
    /// opened it) refuses the takeover naming the mountpoint, gives the fd up and stays in INIT; the old daemon keeps
    /// serving everything. With the image back, the same successor's second takeover succeeds.
    /// </summary>
    [FuseFact]
    public async Task A_successor_that_cannot_open_an_instance_of_the_state_refuses_the_takeover_and_can_retry()
    {
        await using var rig = await UpgradeRig.StartAsync();
        var copy = Path.Combine(Path.GetDirectoryName(rig.MountPoint)!, "copy.boot");
        File.Copy(rig.Image, copy);
        await rig.MountImageThroughApiAsync("/sub/img", copy);
        await rig.SendFdAsync();
        File.Move(copy, copy + ".away");

        var socket = rig.NextSocket();
        var next = rig.Launch(socket, upgrade: true);
        await next.WaitForStateAsync(socket, "INIT", UpgradeRig.Wait);
        var served = rig.Supervisor.ServeNextRestore();
        var (status, body) = await UpgradeRig.PutAsync(socket, "/api/v1/daemon/fuse/takeover");
        await served.WaitAsync(UpgradeRig.Wait);
        output.WriteLine($"takeover by a successor that cannot open /sub/img: {status} {body}");
        Assert.Equal(500, status);
        Assert.Contains("/sub/img", body);
        Assert.Equal("INIT", await UpgradeRig.StateOfAsync(socket));
        await AssertServesAsync(rig);
        await AssertServesAsync(rig, "/sub/img");

        File.Move(copy + ".away", copy);
        await rig.TakeoverAsync(socket);
        await next.WaitForStateAsync(socket, "READY", UpgradeRig.Wait);
        UpgradeRig.Check(await UpgradeRig.PutAsync(rig.CurrentSocket, "/api/v1/daemon/exit"), "exit of the old daemon");
        Assert.Equal(0, await rig.Current.WaitForExitAsync(UpgradeRig.Wait));
        UpgradeRig.Check(await UpgradeRig.PutAsync(socket, "/api/v1/daemon/start"), "start of the successor");
        await next.WaitForStateAsync(socket, "RUNNING", UpgradeRig.Wait);
        await AssertServesAsync(rig);
        await AssertServesAsync(rig, "/sub/img");
    }

    /// <summary>
    /// Passthrough node ids are this process's handles of host paths, so a passthrough mount cannot be handed over:
    /// sendfd says so (501) and the daemon keeps serving; nothing was sent to the supervisor.
    /// </summary>
    [FuseFact]
    public async Task Sendfd_of_a_daemon_serving_a_passthrough_mount_is_refused_and_it_keeps_serving()
    {
        await using var rig = await UpgradeRig.StartAsync();
        var shared = rig.Source;
        using (var api = new Nydus.Actors.Api.ApiClient(rig.CurrentSocket, UpgradeRig.Wait))
        {
            var (status, answer) = await api.SendAsync("POST", "/api/v1/mount?mountpoint=/host",
                $"{{\"source\":{NydusdMount.Json(shared)},\"fs_type\":\"passthrough_fs\",\"config\":\"\"}}");
            Assert.True(status == 204, $"mount answered {status}: {answer}");
        }
        int saves = rig.Supervisor.Saves;
        var (sendStatus, sendBody) = await UpgradeRig.PutAsync(rig.CurrentSocket, "/api/v1/daemon/fuse/sendfd");
        output.WriteLine($"sendfd with a passthrough mount: {sendStatus} {sendBody}");
        Assert.Equal(501, sendStatus);
        Assert.Contains("passthrough", sendBody);
        Assert.Equal(saves, rig.Supervisor.Saves);
        Assert.Equal(File.ReadAllBytes(shared + "/a/f0.bin"), File.ReadAllBytes(rig.MountPoint + "/host/a/f0.bin"));
        await AssertServesAsync(rig);
    }

    /// <summary>Every file reads back with its source content (page cache dropped, so the daemon answers).</summary>
    internal static Task AssertServesAsync(UpgradeRig rig, string under = "") => Task.Run(() =>
    {
        foreach (var (file, hash) in rig.FileHashes)
        {
            using var handle = File.OpenHandle(rig.MountPoint + under + file);
            TreeReaders.DropCache(handle);
            var content = new byte[rig.FileSizes[file]];
            int total = 0, n;
            while (total < content.Length && (n = RandomAccess.Read(handle, content.AsSpan(total), total)) > 0) total += n;
            Assert.True(SHA256.HashData(content.AsSpan(0, total)).AsSpan().SequenceEqual(hash), $"{under}{file} differs");
        }
    }).WaitAsync(UpgradeRig.Wait);
}
