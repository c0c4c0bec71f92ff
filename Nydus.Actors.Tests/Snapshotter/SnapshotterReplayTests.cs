using System.Diagnostics;
using Nydus.Actors.Fuse.Session;
using Nydus.Actors.Tests.Mounts;
using Nydus.Actors.Tests.Support;
using Nydus.Actors.Tests.Upgrade;
using Xunit;
using Xunit.Abstractions;

namespace Nydus.Actors.Tests.Snapshotter;

/// <summary>
/// Replays what nydus-snapshotter (containerd/nydus-snapshotter) does to a shared FUSE nydusd, against the built
/// nydusd, from its source: start and subscribe (pkg/manager/daemon_adaptor.go <c>StartDaemon</c>), mount instances
/// at <c>/&lt;snapshot id&gt;</c> with a sendfd after each (pkg/daemon/daemon.go <c>SharedMount</c>,
/// <c>SendStates</c>), a live upgrade (daemon_event.go <c>DoDaemonUpgrade</c>, then <c>RecoverRafsInstances</c>,
/// which fails the upgrade on the first error), the "failover" recover policy and the "restart" recover policy
/// (daemon_event.go <c>doDaemonFailover</c>, <c>doDaemonRestart</c>, <c>ClearVestige</c>), each driven by the HUP its
/// monitor sees, with the supervisor's socket protocol and its 10 s timeout (pkg/supervisor/supervisor.go).
/// Readers check every file's bytes through the upgrade and the failover.
/// </summary>
[Collection("upgrade")]
public sealed class SnapshotterReplayTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(30);
    // Every caller of SendStatesTimeout passes 10 s (daemon_event.go, daemon_adaptor.go).
    private static readonly TimeSpan SupervisorTimeout = TimeSpan.FromSeconds(10);
    private readonly List<string> _budgetMissed = [];

    [FuseFact]
    public async Task A_shared_daemon_survives_the_snapshotters_upgrade_failover_and_restart_sequences()
    {
        using var dir = new TempDir("snap");
        var id = "snap-" + Guid.NewGuid().ToString("N")[..10];
        var mountpoint = dir.Combine("mnt");
        Directory.CreateDirectory(mountpoint);
        var supervisor = new SnapshotterSupervisor(dir.Combine("supervisor", id + ".sock"));
        Directory.CreateDirectory(Path.GetDirectoryName(supervisor.Path)!);
        var logFile = dir.Combine("logs", id, "nydusd.log");
        // Two snapshots, as the snapshotter names their instances (rafs.go RelaMountpoint: "/" + snapshot id), in the
        // order of their Seq (RecoverRafsInstances sorts by it).
        var images = new[] { SmallImage.Make(dir.Path, "s12", seed: 12, files: 8), SmallImage.Make(dir.Path, "s15", seed: 15, files: 8) };
        var instances = new[] { ("/12", images[0]), ("/15", images[1]) };
        var config = FusedevConfig(dir.Path, dir.Combine("cache"));
        var daemons = new List<SnapshotterDaemon>();
        var readers = new ReaderLoop(mountpoint, instances);
        try
        {
            // ---- Start (StartDaemon + its goroutine) and mount both instances (SharedMount) ----
            var apiSocket = dir.Combine("api.sock");
            var daemon = await StartDaemonAsync(SnapshotterDaemon.SharedDaemonArgs(id, mountpoint, apiSocket, supervisor.Path, logFile, upgrade: false),
                apiSocket, daemons, supervisor);
            foreach (var (at, _) in instances) await SharedMountAsync(daemon, supervisor, at, instances, config);
            var info = await daemon.GetDaemonInfoAsync();
            Assert.Equal("RUNNING", info.GetProperty("state").GetString());
            Assert.Equal(id, info.GetProperty("id").GetString());
            foreach (var (at, image) in instances) image.AssertServedAt(mountpoint + at);
            readers.Start();

            // ---- Live upgrade (DoDaemonUpgrade) ----
            // buildNextAPISocket: api.sock -> api1.sock.
            var nextSocket = dir.Combine("api1.sock");
            var watch = Stopwatch.StartNew();
            var served = supervisor.SendStatesTimeout(SupervisorTimeout);
            var next = SnapshotterDaemon.Exec(nextSocket, SnapshotterDaemon.SharedDaemonArgs(id, mountpoint, nextSocket, supervisor.Path, logFile, upgrade: true));
            daemons.Add(next);
            await WaitUntilStateAsync(next, "INIT", "the upgrade");
            var toInit = watch.Elapsed;
            await TakeOverAsync(next, supervisor, served, "the upgrade");
            var toServed = watch.Elapsed;
            await WaitUntilStateAsync(next, "READY", "the upgrade");
            Assert.False(await daemon.UnsubscribeAsync(), "the monitor saw the old daemon hang up before it was told to exit");
            await daemon.ExitAsync();
            Assert.Equal(0, await daemon.Process.WaitForExitAsync(Wait));
            await next.StartAsync();
            next.Subscribe();
            await WaitUntilStateAsync(next, "RUNNING", "the upgrade");
            // RecoverRafsInstances: every instance is POSTed again (served already, restored from the handoff state);
            // the first error fails the upgrade.
            foreach (var (at, _) in instances) await SharedMountAsync(next, supervisor, at, instances, config);
            output.WriteLine($"upgrade: successor INIT after {toInit.TotalMilliseconds:F0} ms, state fetched (takeover) after "
                             + $"{toServed.TotalMilliseconds:F0} ms, RUNNING and re-mounted after {watch.Elapsed.TotalMilliseconds:F0} ms; "
                             + $"load average {LoadAverage()}");
            daemon = next;
            foreach (var (at, image) in instances) image.AssertServedAt(mountpoint + at);

            // ---- Recover policy "failover" (handleDaemonDeathEvent -> doDaemonFailover) ----
            daemon.Process.Signal(NydusdProcess.SIGKILL);
            await daemon.Hup.WaitAsync(Wait);
            watch.Restart();
            Assert.NotEqual(0, await daemon.Process.WaitForExitAsync(Wait)); // d.Wait()
            await WaitUntilUnmountedAsync(mountpoint); // d.Wait(): gives up after 20 tries, the mount stays (the fd is held)
            await daemon.UnsubscribeAsync();
            served = supervisor.SendStatesTimeout(SupervisorTimeout);
            // StartDaemon builds the command with upgrade=false, on the daemon's current API socket (api1.sock now).
            var restartArgs = SnapshotterDaemon.SharedDaemonArgs(id, mountpoint, daemon.ApiSocket, supervisor.Path, logFile, upgrade: false);
            var failedOver = await StartDaemonAsync(restartArgs, daemon.ApiSocket, daemons, supervisor, afterStart: async d =>
            {
                await WaitUntilStateAsync(d, "INIT", "the failover");
                await TakeOverAsync(d, supervisor, served, "the failover");
                output.WriteLine($"failover: state fetched {watch.Elapsed.TotalMilliseconds:F0} ms after the death was seen; load average {LoadAverage()}");
                await d.StartAsync();
            });
            output.WriteLine($"failover: RUNNING {watch.Elapsed.TotalMilliseconds:F0} ms after the death was seen");
            daemon = failedOver;
            var (operations, failures) = await readers.StopAsync();
            output.WriteLine($"readers: {operations} whole-file reads through the upgrade and the failover, {failures.Count} failed");
            Assert.Empty(failures);
            Assert.True(operations > 0, "the readers read nothing");
            foreach (var (at, image) in instances) image.AssertServedAt(mountpoint + at);

            // ---- Recover policy "restart" (doDaemonRestart): unmount, start afresh, POST every instance again ----
            daemon.Process.Signal(NydusdProcess.SIGKILL);
            await daemon.Hup.WaitAsync(Wait);
            Assert.NotEqual(0, await daemon.Process.WaitForExitAsync(Wait));
            await WaitUntilUnmountedAsync(mountpoint);
            await daemon.UnsubscribeAsync();
            // ClearVestige: umount(2) without flags, remove the API socket (so the new daemon sees no crash).
            Assert.Equal(0, Nydus.Actors.Interop.Libc.Umount2(mountpoint, 0));
            File.Delete(daemon.ApiSocket);
            watch.Restart();
            var restarted = SnapshotterDaemon.Exec(daemon.ApiSocket, restartArgs);
            daemons.Add(restarted);
            // Right after cmd.Start, before the goroutine's RUNNING: the instances are POSTed again. The daemon
            // restores them from its journal too; whichever comes first, every POST succeeds.
            foreach (var (at, _) in instances) await SharedMountAsync(restarted, supervisor, at, instances, config);
            await FinishStartAsync(restarted, supervisor);
            output.WriteLine($"restart: RUNNING with both instances {watch.Elapsed.TotalMilliseconds:F0} ms after exec");
            daemon = restarted;
            foreach (var (at, image) in instances) image.AssertServedAt(mountpoint + at);
            var backends = (await daemon.GetDaemonInfoAsync()).GetProperty("backend_collection");
            Assert.True(backends.TryGetProperty("/12", out _) && backends.TryGetProperty("/15", out _), backends.ToString());

            // ---- Remove: umount each instance (snapshotter's RemoveRafsInstance), then Terminate (SIGTERM unmounts) ----
            foreach (var (at, _) in instances) await daemon.UmountAsync(at);
            var missing = await Assert.ThrowsAsync<NydusdApiException>(() => daemon.UmountAsync("/12"));
            Assert.Equal(404, missing.Status);
            Assert.False(daemon.Hup.IsCompleted, "the monitor saw the running daemon hang up");
            await daemon.UnsubscribeAsync();
            daemon.Process.Signal(NydusdProcess.SIGTERM);
            Assert.Equal(0, await daemon.Process.WaitForExitAsync(Wait));
            Assert.False(NydusdMount.IsListedInMounts(mountpoint));
        }
        finally
        {
            foreach (var d in daemons) await d.DisposeAsync();
            output.WriteLine($"the snapshotter's waits (20 tries for a state, 10 s for a takeover) ran out {_budgetMissed.Count} time(s): "
                             + string.Join("; ", _budgetMissed));
            foreach (var d in daemons) output.WriteLine($"---- nydusd {string.Join(' ', d.Args)}\n{d.Process.Output}");
            // Readers blocked on a connection nobody serves any more wake with ENOTCONN once it is aborted.
            if (FuseMount.FindConnectionId(mountpoint) is { } connection)
            {
                try { FuseMount.Abort(connection); } catch (Nydus.Actors.Fuse.FuseException) { }
            }
            try { await readers.StopAsync(); } catch (TimeoutException) { }
            NydusdMount.DetachIfMounted(mountpoint);
            supervisor.Dispose();
            // No --work-dir on the snapshotter's command line: the daemon kept its journal at the default place for its id.
            var workDir = Path.Combine(Environment.UserName == "root" ? "/var/lib/nydus" : DefaultStateHome(), "daemons", id);
            if (Directory.Exists(workDir)) Directory.Delete(workDir, recursive: true);
        }
    }

    /// <summary>StartDaemon: exec, then (its goroutine) the socket, Subscribe, RUNNING, SendStates. A failover runs its
    /// own steps between exec and RUNNING (<paramref name="afterStart"/>).</summary>
    private async Task<SnapshotterDaemon> StartDaemonAsync(string[] args, string apiSocket, List<SnapshotterDaemon> daemons,
        SnapshotterSupervisor supervisor, Func<SnapshotterDaemon, Task>? afterStart = null)
    {
        var daemon = SnapshotterDaemon.Exec(apiSocket, args);
        daemons.Add(daemon);
        if (afterStart is not null)
        {
            await daemon.WaitUntilSocketExistedAsync();
            await afterStart(daemon);
        }
        await FinishStartAsync(daemon, supervisor);
        return daemon;
    }

    /// <summary>The rest of StartDaemon's goroutine. Its failures are only logged by the snapshotter, which then skips
    /// SendStates: so here too (they are reported in the test output, and counted).</summary>
    private async Task FinishStartAsync(SnapshotterDaemon daemon, SnapshotterSupervisor supervisor)
    {
        await daemon.WaitUntilSocketExistedAsync();
        daemon.Subscribe();
        if (!await WaitUntilStateAsync(daemon, "RUNNING", "StartDaemon")) return; // logged, no SendStates (as upstream)
        await SendStatesAsync(daemon, supervisor);
    }

    /// <summary>WaitUntilState; when the snapshotter's budget of 20 tries ran out before the state came, that is
    /// reported (the snapshotter would have given up <paramref name="step"/> there) and counted.</summary>
    private async Task<bool> WaitUntilStateAsync(SnapshotterDaemon daemon, string state, string step)
    {
        var watch = Stopwatch.StartNew();
        if (await daemon.WaitUntilStateAsync(state)) return true;
        _budgetMissed.Add($"{step}: {state} after {watch.ElapsedMilliseconds} ms (load average {LoadAverage()})");
        output.WriteLine($"snapshotter would give up {step} here: daemon {daemon.Process.Pid} reported {state} only after "
                         + $"{watch.ElapsedMilliseconds} ms, past its 20 tries");
        return false;
    }

    /// <summary>
    /// TakeOver while the supervisor's window (opened before the successor was started) is open. A successor that
    /// comes up too late for it finds the listener closed and answers 500: the snapshotter's upgrade or failover fails
    /// there. How fast a process starts is the machine's load, so that is reported and counted, and the window opened
    /// again so the rest of the replay still checks what the daemons serve; every other takeover failure fails the test.
    /// </summary>
    private async Task TakeOverAsync(SnapshotterDaemon daemon, SnapshotterSupervisor supervisor, Task<bool> window, string step)
    {
        try
        {
            await daemon.TakeOverAsync();
        }
        catch (NydusdApiException e) when (e.Status == 500 && window.IsCompleted && !window.Result)
        {
            _budgetMissed.Add($"{step}: the supervisor's 10 s window closed before the takeover (load average {LoadAverage()})");
            output.WriteLine($"snapshotter's {step} would fail here: {e.Message}; opening the window again");
            window = supervisor.SendStatesTimeout(SupervisorTimeout);
            await daemon.TakeOverAsync();
        }
        Assert.True(await window.WaitAsync(Wait), $"{step}: the supervisor did not serve the state");
    }

    /// <summary>Daemon.SendStates: FetchDaemonStates around sendfd; a failure is a warning to the snapshotter.</summary>
    private async Task SendStatesAsync(SnapshotterDaemon daemon, SnapshotterSupervisor supervisor)
    {
        try
        {
            await supervisor.FetchDaemonStatesAsync(daemon.SendFdAsync).WaitAsync(Wait);
        }
        catch (NydusdApiException e)
        {
            output.WriteLine($"snapshotter: Daemon does not support sending states, {e.Message}");
        }
    }

    /// <summary>SharedMount -> sharedFusedevMount (POST, must succeed) then SendStates (sendfd into the supervisor).</summary>
    private async Task SharedMountAsync(SnapshotterDaemon daemon, SnapshotterSupervisor supervisor, string at,
        (string At, SmallImage Image)[] instances, string config)
    {
        var image = instances.Single(i => i.At == at).Image;
        await daemon.WaitUntilSocketExistedAsync(); // GetClient
        await daemon.MountAsync(at, image.Image, config);
        await SendStatesAsync(daemon, supervisor);
    }

    /// <summary>mount.WaitUntilUnmounted: 20 tries 50 ms apart; its failure is only logged by the snapshotter.</summary>
    private static async Task WaitUntilUnmountedAsync(string mountpoint)
    {
        try
        {
            await SnapshotterRetry.DoAsync(() => NydusdMount.IsListedInMounts(mountpoint)
                ? throw new IOException($"{mountpoint} is still mounted") : Task.CompletedTask, attempts: 20, TimeSpan.FromMilliseconds(50));
        }
        catch (IOException)
        {
        }
    }

    /// <summary>The config the snapshotter writes per instance for fusedev (config/daemonconfig/fuse.go, the legacy
    /// RafsConfig shape of misc/snapshotter/nydusd-config.fusedev.json), with the backend on local files instead of a
    /// registry (the images are plain EROFS, their data inside the bootstrap).</summary>
    private static string FusedevConfig(string blobDir, string cacheDir) =>
        "{\"device\":{\"backend\":{\"type\":\"localfs\",\"config\":{\"dir\":" + NydusdMount.Json(blobDir) + "}},"
        + "\"cache\":{\"type\":\"blobcache\",\"config\":{\"work_dir\":" + NydusdMount.Json(cacheDir) + "}}},"
        + "\"mode\":\"direct\",\"digest_validate\":false,\"iostats_files\":false,\"enable_xattr\":true,\"amplify_io\":1048576,"
        + "\"fs_prefetch\":{\"enable\":true,\"threads_count\":8,\"merging_size\":1048576,\"prefetch_all\":true}}";

    private static string LoadAverage() => File.ReadAllText("/proc/loadavg").Split(' ')[0];

    private static string DefaultStateHome() => Environment.GetEnvironmentVariable("XDG_STATE_HOME")
        ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".local", "state", "nydus");

    /// <summary>Two readers reading every file of both instances whole, page cache dropped first, and comparing bytes.</summary>
    private sealed class ReaderLoop(string mountpoint, (string At, SmallImage Image)[] instances)
    {
        private readonly CancellationTokenSource _stop = new();
        private readonly List<Task> _tasks = [];
        private readonly System.Collections.Concurrent.ConcurrentQueue<string> _failures = new();
        private long _operations;

        public void Start()
        {
            var files = instances.SelectMany(i => Directory.EnumerateFiles(i.Image.Source, "*", SearchOption.AllDirectories)
                .Select(f => (Mounted: mountpoint + i.At + "/" + Path.GetRelativePath(i.Image.Source, f), Expected: File.ReadAllBytes(f)))).ToArray();
            for (int r = 0; r < 2; r++)
            {
                int offset = r;
                _tasks.Add(Task.Factory.StartNew(() =>
                {
                    for (int n = offset; !_stop.IsCancellationRequested; n++)
                    {
                        var (mounted, expected) = files[n % files.Length];
                        try
                        {
                            using var handle = File.OpenHandle(mounted);
                            TreeReaders.DropCache(handle);
                            var content = new byte[expected.Length + 1];
                            int total = 0, read;
                            while ((read = RandomAccess.Read(handle, content.AsSpan(total), total)) > 0) total += read;
                            if (!content.AsSpan(0, total).SequenceEqual(expected)) _failures.Enqueue($"{mounted}: content differs");
                        }
                        catch (IOException e)
                        {
                            _failures.Enqueue($"{mounted}: {e.Message}");
                        }
                        Interlocked.Increment(ref _operations);
                    }
                }, TaskCreationOptions.LongRunning));
            }
        }

        /// <summary>Stops the readers (bounded: a read stuck on a connection nobody serves fails the test instead).</summary>
        public async Task<(long Operations, List<string> Failures)> StopAsync()
        {
            _stop.Cancel();
            await Task.WhenAll(_tasks).WaitAsync(Wait);
            _tasks.Clear();
            return (Interlocked.Read(ref _operations), [.. _failures]);
        }
    }
}
