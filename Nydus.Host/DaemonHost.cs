using System.Runtime.InteropServices;
using Akka.Actor;
using Nydus.Actors.Api;
using Nydus.Actors.Daemon;
using Nydus.Actors.Daemon.Persistence;
using Nydus.Actors.Fuse.Session;
using Serilog;
using Serilog.Core;
using Serilog.Events;

namespace Nydus.Host;

/// <summary>
/// Runs one daemon process: logging, the actor system from hocon/, the daemon actor, the API server, signals.
/// The process lives exactly as long as the daemon actor: when the state machine reaches STOPPED the actor stops and
/// the process exits (upstream's run_loop).
/// </summary>
public static class DaemonHost
{
    public static async Task<int> RunAsync(NydusdOptions options, CancellationToken _)
    {
        var timeline = new StartupTimeline();
        var levelSwitch = new LoggingLevelSwitch(ToSerilogLevel(options.LogLevel));
        Log.Logger = NydusdLogging.Create(levelSwitch, options.LogFile, options.LogRotationSize);
        timeline.Mark("logging");
        CreatedDirectory? workDir = null;
        var temporaryWorkDir = false;
        var started = new StartProgress();
        using var systemd = SystemdNotifier.FromEnvironment();
        var exitCode = 1;
        try
        {
            workDir = ResolveWorkDir(options, out temporaryWorkDir);
            exitCode = await RunDaemonAsync(options, workDir.Path, levelSwitch, started, systemd, timeline);
            return exitCode;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or Akka.Configuration.ConfigurationException
                                       or Nydus.Actors.Config.ConfigException or Nydus.Actors.Rafs.RafsException
                                       or Nydus.Actors.Storage.StorageException or Nydus.Actors.Fuse.FuseException
                                       or AskTimeoutException)
        {
            Log.Fatal("nydusd cannot start: {Error}", e.Message);
            return 1;
        }
        finally
        {
            if (temporaryWorkDir) TryDelete(workDir!.Path);
            // A start that failed takes back the state directory it made (one that was there before stays).
            else if (!started.Served) workDir?.RemoveCreated();
            await Log.CloseAndFlushAsync();
            // An old daemon of an upgrade: the successor's start waits for this process to be gone.
            if (started.LeftToSuccessor && exitCode == 0) ImmediateExit.Now(exitCode);
        }
    }

    /// <summary>Set once the daemon serves (RUNNING, or INIT waiting for a takeover): from then on its state is kept.</summary>
    private sealed class StartProgress
    {
        public bool Served { get; set; }

        /// <summary>The daemon exited leaving its mount to a successor, with its journal and API answers done.</summary>
        public bool LeftToSuccessor { get; set; }
    }

    private static async Task<int> RunDaemonAsync(NydusdOptions options, string workDir, LoggingLevelSwitch levelSwitch,
        StartProgress started, SystemdNotifier systemd, StartupTimeline timeline)
    {
        var openFiles = ProcessLimits.RaiseOpenFiles(options.RlimitNofile);
        var hoconDir = Path.Combine(AppContext.BaseDirectory, "hocon");
        var journalFiles = new JournalFiles(workDir);
        var hoconFile = DaemonHocon.ResolveUserFile(options.HoconFile, Environment.GetEnvironmentVariable(DaemonHocon.EnvironmentVariable));
        var config = DaemonHocon.Load(hoconDir, workDir, hoconFile, ToAkkaLevel(options.LogLevel),
            logToFileOnly: options.LogFile is not null, journalKeyFile: journalFiles.KeyPath);
        timeline.Mark("hocon");
        if (hoconFile is not null) Log.Information("HOCON from {HoconFile}", hoconFile);
        if (options.LogRotationSize > 0 && options.LogFile is null)
            Log.Warning("--log-rotation-size {Size} has no effect without --log-file: stderr is not rotated", options.LogRotationSize);
        Log.Information("nydusd {Version} starting: id {DaemonId}, work dir {WorkDir}, open files limit {OpenFiles}",
            DaemonVersion.PackageVersion, options.Id ?? "(none)", workDir, openFiles);

        // Refuse a live socket before anything else starts: a second daemon must not disturb the first.
        if (options.ApiSock is not null && ApiSocket.IsLive(options.ApiSock))
            throw new IOException($"API socket {options.ApiSock} is in use by a running daemon");
        // Crash detection reads the old socket file, so it runs before the socket is bound again.
        var takeover = UpgradeStart.Detect(options);
        // The socket listens from here on: a client's request waits in its backlog until the API server answers it,
        // instead of failing ("connection refused" on a crashed predecessor's socket file, which nydus-snapshotter
        // counts against its 20 tries) while the runtime, the actor system and Kestrel come up.
        using var apiListener = options.ApiSock is null ? null : ApiListener.Bind(options.ApiSock);
        if (apiListener is not null) timeline.Mark("api-socket");
        // The actor system takes a few hundred milliseconds of CPU to come up (assembly loading, code that runs only
        // now) and needs nothing of what follows (its persistence plugin starts only with the daemon's journal, after
        // the files are checked): it comes up on another core while this thread checks the journal files and mounts.
        // Any way out before it is used leaves it to the process's end (Program ends the process).
        var systemStarting = Task.Run(() =>
        {
            var created = ActorSystem.Create("nydusd", config);
            timeline.Mark("actor-system");
            return created;
        });
        // The daemon's table of instances and its error log: one per daemon, handed to the FUSE setup, the daemon and the API.
        var mountMetrics = new Nydus.Actors.Daemon.Mounts.MountMetricsRegistry();
        // The fscache counters: one set per daemon, read by the API, counted by the service.
        var fscacheMetrics = options.Singleton && options.Fscache is not null ? new Nydus.Actors.Fscache.FscacheMetrics() : null;
        // The API server takes a few hundred milliseconds of CPU to come up, as the actor system does: it starts now, on
        // the socket already listening. Requests that need the daemon (mount, takeover, start) wait for its actor.
        var daemonReady = new TaskCompletionSource<IActorRef>(TaskCreationOptions.RunContinuationsAsynchronously);
        // What GET /api/v1/daemon reports (INIT until the daemon's state machine moves on): the API answers it from the
        // moment it listens, without waiting for the daemon actor.
        var readModel = new DaemonReadModel(options.Id, options.Supervisor);
        var apiStarting = apiListener is null
            ? Task.FromResult<ApiServer?>(null)
            : StartApiAsync(apiListener, daemonReady.Task, readModel, config, levelSwitch, timeline, mountMetrics, fscacheMetrics);
        var transferTimeout = config.GetTimeSpan("nydus.upgrade.transfer-timeout", TimeSpan.FromSeconds(10));
        // The daemon's blob caches: one registry, made before any image is opened (the command line's is opened next)
        // and handed to everything that opens a cache; the daemon's blob-cache actor disposes it when it stops.
        var blobCaches = new Nydus.Actors.Storage.Cache.BlobCacheRegistry
        {
            ReadAheadWindows = Math.Clamp(config.GetInt("nydus.blob-cache.read-ahead", 2), 0, 8),
        };
        FsServiceSetup? fuse;
        Nydus.Actors.Fscache.ICachefilesDevice? fscacheDevice;
        try
        {
            // Before anything is mounted: a damaged journal ends the start here, with the file and what to do.
            JournalStartup.Prepare(journalFiles, config, options.JournalRepair);
            timeline.Mark("journal-files");

            // FUSE mode: the filesystem is opened and the kernel mount made before the daemon exists (upstream's order);
            // a takeover opens the filesystem only: the kernel mount and its fd come from the predecessor.
            // virtio-fs: the image is opened and the vhost-user socket bound, likewise before the daemon exists.
            fuse = options.Singleton ? null
                : options.VirtioFsSocket is not null ? VirtioFsServiceSetup.Prepare(options, mountMetrics, blobCaches)
                : FuseServiceSetup.Prepare(options,
                    UpgradeStart.HandoffSettings(options, transferTimeout, isFailover: takeover == TakeoverReason.Failover), takeover, mountMetrics, blobCaches);
            if (fuse is not null) timeline.Mark(takeover is null ? "image+mount" : "image");
            // Singleton with --fscache: the cachefiles device is opened and bound before the daemon exists, as a FUSE
            // daemon's mount is (a refused bind ends the start here). A successor opens nothing: the predecessor's
            // descriptor comes with the takeover.
            fscacheDevice = options.Singleton && options.Fscache is { } fscacheDir && takeover is null ? FscacheSetup.OpenDevice(options, fscacheDir) : null;
        }
        catch
        {
            blobCaches.Dispose();
            daemonReady.SetCanceled();
            await DisposeQuietlyAsync(apiStarting);
            throw;
        }
        ActorSystem system;
        try
        {
            system = await systemStarting;
        }
        catch (Exception e)
        {
            fuse?.Undo();
            blobCaches.Dispose();
            fscacheDevice?.Dispose();
            daemonReady.SetCanceled();
            await DisposeQuietlyAsync(apiStarting);
            // Akka reports a bad setting (e.g. akka.loglevel from --hocon) as an ArgumentException: a configuration error.
            if (e is ArgumentException) throw new Akka.Configuration.ConfigurationException($"invalid actor system configuration: {e.Message}", e);
            throw;
        }
        var settings = new DaemonSettings(
            options.Id,
            options.Supervisor,
            options.Singleton ? DaemonKind.Singleton : options.VirtioFsSocket is not null ? DaemonKind.VirtioFs : DaemonKind.Fuse,
            workDir,
            ServiceProps: fuse?.ServiceProps ?? FscacheSetup.ServiceProps(fscacheDevice, options,
                config.GetTimeSpan("nydus.daemon.action-timeout", TimeSpan.FromSeconds(30)), transferTimeout, takeover is not null, fscacheMetrics, blobCaches),
            ActionTimeout: config.GetTimeSpan("nydus.daemon.action-timeout", TimeSpan.FromSeconds(30)))
        {
            Vfs = fuse?.Vfs,
            ReadModel = readModel,
            Metrics = mountMetrics,
            Caches = blobCaches,
            DeferStartRecord = takeover is not null,
            CacheLimits = new Nydus.Actors.Storage.Cache.BlobCacheLimits(
                config.GetByteSize("nydus.blob-cache.disk-limit", 0) ?? 0,
                config.GetTimeSpan("nydus.blob-cache.check-interval", TimeSpan.FromSeconds(60))),
            Bootstraps = new Nydus.Actors.Rafs.RafsBootstrapBlobTable(),
        };
        var daemon = system.ActorOf(DaemonActor.Props(settings), "daemon");
        daemonReady.SetResult(daemon);
        timeline.Mark("daemon-actor");
        var daemonStopped = daemon.WatchAsync();
        // A start that fails after the daemon exists stops it (it takes back what it set up, the kernel mount
        // included), waiting for that at most 30 s: the start fails either way.
        async Task StopDaemonAsync()
        {
            daemon.Tell(TriggerStop.Instance);
            await daemonStopped.WaitAsync(TimeSpan.FromSeconds(30)).ContinueWith(_ => { });
        }
        // The command line's instance takes the API's path (upstream: service.mount(cmd)): attached and recorded by
        // the filesystem service like any other; meanwhile the API comes up.
        // A cold start is answered once the instance serves: its journal record follows once the journal has recovered.
        var commandLineMounted = fuse?.CommandLine is { } commandLine
            ? daemon.Ask<Nydus.Actors.Daemon.Mounts.MountOperationResult>(commandLine with { AnswerWhenAttached = true }, TimeSpan.FromMinutes(5))
            : null;
        // A supervised FUSE daemon's cold start serves before its journal has recovered (Akka.Persistence.Sql's first
        // use takes a second of CPU, many seconds on a loaded machine, and nydus-snapshotter polls for RUNNING 20 times
        // only): the command line's instance is in hand, and what the API had mounted is mounted again right after
        // (catch-up); its supervisor mounts every instance again after a restart anyway (nydus-snapshotter does).
        // Without a supervisor the journal is the only copy of the table, and the start serves only once it is mounted.
        var restoreAfterRunning = takeover is null && fuse is not null && options.Supervisor is not null;

        ApiServer? api = null;
        // Until the daemon runs, any way out of this method takes the kernel mount back (a daemon waiting for a
        // takeover never owned it: it belongs to the predecessor); once it runs, its own stop unmounts, and an exit
        // for an upgrade must leave the mount to the successor.
        bool running = false;
        long endSeenAt = 0;
        try
        {
            try
            {
                api = await apiStarting;
            }
            catch
            {
                // No API, no daemon: take back what was set up, the kernel mount included.
                await StopDaemonAsync();
                throw;
            }

            using var signals = RegisterShutdownSignals(daemon, systemd);

            if (commandLineMounted is not null)
            {
                // A daemon told to stop meanwhile never answers: stop waiting.
                if (await Task.WhenAny(commandLineMounted, daemonStopped) != commandLineMounted) return 1;
                var mounted = await commandLineMounted;
                timeline.Mark("command-line-mounted");
                if (!mounted.Succeeded)
                {
                    Log.Fatal("nydusd failed to start: {Error}", mounted.Message);
                    await StopDaemonAsync();
                    return 1;
                }
            }

            // A takeover does not wait for the journal: its predecessor's table comes with the handoff state, and the
            // journal catches up once it runs. A supervised FUSE cold start reads it right after it runs. Any other
            // start reads it before it serves: one that cannot be read ends the start here (a mount table that
            // cannot be read is never served as an empty one).
            if (takeover is null && !restoreAfterRunning
                && !await RecoverAndRestoreAsync(daemon, daemonStopped, settings, journalFiles, config, timeline, restoreMounts: fuse is not null))
            {
                await StopDaemonAsync();
                return 1;
            }

            // A singleton's --config may list blobs (upstream's BlobCacheList): added before it serves, not recorded.
            if (options.Singleton && options.Config is { } singletonConfig && takeover is null)
                await SingletonBlobs.AddAsync(daemon, singletonConfig, settings.ActionTimeout);

            // A normal start sends itself Mount then Start (upstream: every daemon kind does); a takeover waits in INIT
            // for the supervisor's takeover and start.
            if (takeover is not null)
            {
                Log.Information("nydusd is {State}, waiting for a takeover ({Reason})", DaemonState.Init.ToApiName(), takeover);
                started.Served = true;
                systemd.Ready($"INIT, waiting for a takeover ({takeover})");
                timeline.Mark("init");
                Log.Information("{Timeline}", timeline.Summary());
            }
            foreach (var input in takeover is null ? new[] { DaemonInput.Mount, DaemonInput.Start } : [])
            {
                if (daemonStopped.IsCompleted) break;
                var result = await daemon.Ask<DaemonCommandResult>(new DaemonCommand(input), settings.ActionTimeout + TimeSpan.FromSeconds(5));
                if (!result.Succeeded)
                {
                    Log.Fatal("nydusd failed to start: {Error}", result.Error!.Message);
                    await StopDaemonAsync();
                    return 1;
                }
            }
            running = true;
            if (takeover is null)
            {
                Log.Information("nydusd is {State}", DaemonState.Running.ToApiName());
                started.Served = true;
                systemd.Ready(DaemonState.Running.ToApiName());
                timeline.Mark("running");
                Log.Information("{Timeline}", timeline.Summary());
            }
            if (restoreAfterRunning) _ = CatchUpAfterRunningAsync(daemon, daemonStopped, settings, journalFiles, config, timeline);
            // The watchdog is fed only while the daemon actor answers.
            systemd.StartWatchdog(async token =>
                await daemon.Ask<DaemonInfo>(GetDaemonInfo.Instance, TimeSpan.FromSeconds(5), token) is not null);

            // A stop ends with the actor; an exit once the journal confirmed its writes (the rest is the successor's).
            await Task.WhenAny(daemonStopped, settings.Outcome.LeftToSuccessor);
            endSeenAt = System.Diagnostics.Stopwatch.GetTimestamp();
            systemd.Stopping("STOPPED");
            if (settings.Outcome.Failure is { } failure)
            {
                Log.Fatal("nydusd stopped: {Reason}", failure);
                return 1;
            }
            Log.Information("nydusd exits");
            return 0;
        }
        finally
        {
            if (running && (daemonStopped.IsCompleted || settings.Outcome.LeftToSuccessor.IsCompleted))
            {
                // The daemon has stopped: its workers are joined and its journal confirmed every write
                // (DaemonActor.StopAfterJournalFlush); after a stop its instances are disposed too (caches flushed),
                // after an exit they are left as they are (the successor opened its own). Nothing left holds data, so
                // the process ends now, as upstream's does once it answered exit: a graceful stop of Kestrel and of
                // the actor system took 300 ms and more (cold code under load), all of it in the stall of an upgrade
                // whose supervisor waits for the old process to be gone. The API's last answers and the actors' last
                // log lines go out meanwhile. Program ends the process (Environment.Exit).
                var answersSent = Task.Run(async () =>
                {
                    if (api is not null) await api.CloseForExitAsync(TimeSpan.FromSeconds(1));
                    return System.Diagnostics.Stopwatch.GetTimestamp();
                });
                await DrainActorLogsAsync(system, TimeSpan.FromSeconds(1));
                long logsWritten = System.Diagnostics.Stopwatch.GetTimestamp();
                Log.Information("Exit: {Timings}; the actor system is left to the process's end",
                    ExitTimings(settings.Outcome, endSeenAt, await answersSent, logsWritten));
                started.LeftToSuccessor = settings.Outcome.LeftToSuccessor.IsCompleted && settings.Outcome.Failure is null;
            }
            else
            {
                if (api is not null) await api.DisposeAsync();
                await system.Terminate().WaitAsync(TimeSpan.FromSeconds(15));
            }
            if (!running && fuse is FuseServiceSetup { MountPoint: var mountPoint } && takeover is null) TakeBackMount(mountPoint);
        }
    }

    /// <summary>Where an exit's time went (issue 20: an old daemon must be gone within a few ms of handing over), in
    /// ms from the daemon's answer in STOPPED: its journal confirmed its writes, the host saw the daemon end (after a
    /// stop: its actor tree stopped, instances disposed), the API's last answers sent, the actors' log lines written.</summary>
    private static string ExitTimings(DaemonOutcome outcome, long endSeen, long answersSent, long logsWritten)
    {
        string Since(long at) => outcome.StoppedAt == 0 || at == 0 ? "?"
            : System.Diagnostics.Stopwatch.GetElapsedTime(outcome.StoppedAt, at).TotalMilliseconds.ToString("F1", System.Globalization.CultureInfo.InvariantCulture);
        return $"journal flushed +{Since(outcome.JournalFlushedAt)} ms, daemon ended +{Since(endSeen)} ms"
               + (outcome.LeftToSuccessor.IsCompleted ? " (left to its successor)" : " (actor tree stopped)")
               + $", API answers sent +{Since(answersSent)} ms, actor logs written +{Since(logsWritten)} ms";
    }

    /// <summary>Waits until Akka's loggers have written what the actors logged so far (the daemon's last lines:
    /// "Daemon stopped"): they run as actors, and a process ended without the actor system's shutdown would drop
    /// what is still in their mailboxes. Identify is answered in mailbox order, so its answer comes after them.</summary>
    private static async Task DrainActorLogsAsync(ActorSystem system, TimeSpan timeout)
    {
        try
        {
            await system.ActorSelection("/system/log*").Ask<ActorIdentity>(new Identify(null), timeout);
        }
        catch (AskTimeoutException)
        {
        }
    }

    /// <summary>Unmounts what a failed start mounted, so that the next start finds a plain directory instead of a
    /// dead FUSE mount ("Transport endpoint is not connected").</summary>
    private static void TakeBackMount(string mountPoint)
    {
        try
        {
            if (FuseMount.Unmount(mountPoint)) Log.Information("The failed start unmounted {MountPoint}", mountPoint);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or Nydus.Actors.Fuse.FuseException)
        {
            Log.Error("The failed start could not unmount {MountPoint}: {Error}; unmount it by hand (umount -l)", mountPoint, e.Message);
        }
    }

    private static Task<ApiServer?> StartApiAsync(ApiListener socket, Task<IActorRef> daemon, DaemonReadModel readModel, Akka.Configuration.Config config,
        LoggingLevelSwitch levelSwitch, StartupTimeline timeline, Nydus.Actors.Daemon.Mounts.MountMetricsRegistry mountMetrics,
        Nydus.Actors.Fscache.FscacheMetrics? fscacheMetrics)
    {
        var askTimeout = config.GetTimeSpan("nydus.api.ask-timeout", TimeSpan.FromSeconds(30));
        var context = new ApiContext(daemon, askTimeout, level => TrySetLevel(levelSwitch, level), mountMetrics.Events)
        {
            ReadModel = readModel,
            Metrics = mountMetrics,
            Fscache = fscacheMetrics,
            IdleTimeout = ApiIdleTimeout(config),
            MountTimeout = config.GetTimeSpan("nydus.api.mount-timeout", TimeSpan.FromMinutes(2)),
        };
        return Task.Run(async () =>
        {
            var api = await ApiServer.StartAsync(socket, context);
            timeline.Mark("api");
            return (ApiServer?)api;
        });
    }

    /// <summary>HOCON nydus.api.idle-timeout: "infinite" (the default) keeps idle API connections open for good.</summary>
    internal static TimeSpan? ApiIdleTimeout(Akka.Configuration.Config config)
    {
        var idle = config.GetTimeSpan("nydus.api.idle-timeout", Timeout.InfiniteTimeSpan);
        return idle == Timeout.InfiniteTimeSpan || idle <= TimeSpan.Zero ? null : idle;
    }

    private static async Task DisposeQuietlyAsync(Task<ApiServer?> starting)
    {
        try
        {
            if (await starting is { } api) await api.DisposeAsync();
        }
        catch (Exception e) when (e is IOException or InvalidOperationException)
        {
        }
    }

    /// <summary>
    /// Reads the journal and, with <paramref name="restoreMounts"/>, mounts again what the API had mounted, at the
    /// same virtual mountpoints and instance indexes (a failed one is logged; the rest serve). False, with the cause
    /// logged, when the journal or its mount table cannot be read, or the daemon stopped first.
    /// </summary>
    private static async Task<bool> RecoverAndRestoreAsync(IActorRef daemon, Task daemonStopped, DaemonSettings settings,
        JournalFiles journalFiles, Akka.Configuration.Config config, StartupTimeline timeline, bool restoreMounts)
    {
        var restoring = restoreMounts
            ? daemon.Ask<Nydus.Actors.Daemon.Mounts.MountOperationResult>(Nydus.Actors.Daemon.Mounts.RestoreMounts.Instance, TimeSpan.FromMinutes(5))
            : null;
        var record = await RecoverJournalAsync(daemon, daemonStopped,
            config.GetTimeSpan("nydus.journal.recovery-timeout", TimeSpan.FromSeconds(60)));
        timeline.Mark("journal-recovered");
        if (record is null)
        {
            if (daemonStopped.IsCompleted && settings.Outcome.Failure is null) return false;
            var why = settings.Outcome.Failure ?? "the daemon stopped before its journal was read";
            Log.Fatal("nydusd cannot start: {Error} (journal {Journal}); {Hint}", why, journalFiles.JournalPath, journalFiles.RepairHint);
            return false;
        }
        Log.Information("Daemon record: {StartCount} starts, {MountCount} mounts recorded", record.StartCount, record.Mounts.Count);
        // A daemon told to stop meanwhile (exit, a signal) never answers: stop waiting.
        if (restoring is null || await Task.WhenAny(restoring, daemonStopped) != restoring) return true;
        var restored = await restoring;
        // Failures of single mounts are listed (the rest serve); none listed means the table itself was not read.
        if (!restored.Succeeded && restored.Failures.IsDefaultOrEmpty)
        {
            Log.Fatal("nydusd cannot start: {Error} (journal {Journal})", restored.Message, journalFiles.JournalPath);
            return false;
        }
        Log.Information("Mount table: {Result}", restored.Message);
        timeline.Mark("mounts-restored");
        return true;
    }

    /// <summary>
    /// The rest of a FUSE cold start, once it serves: the journal recovers, the instances it records that are not
    /// mounted yet are mounted again (an API mount made meanwhile wins over its record), and every write asked meanwhile
    /// (the command line's instance, API changes) lands in the journal in order, so the journal ends up recording what is
    /// served. sendfd waits until the restore is done (a handoff state must list every instance). A journal that cannot
    /// be read stops the daemon (its kernel mount goes with it): a table that cannot be read is not served as an empty one.
    /// </summary>
    private static async Task CatchUpAfterRunningAsync(IActorRef daemon, Task daemonStopped, DaemonSettings settings,
        JournalFiles journalFiles, Akka.Configuration.Config config, StartupTimeline timeline)
    {
        try
        {
            if (await RecoverAndRestoreAsync(daemon, daemonStopped, settings, journalFiles, config, timeline, restoreMounts: true))
            {
                Log.Information("Journal caught up after the start: {Timeline}", timeline.Summary());
                return;
            }
        }
        catch (Exception e) when (e is AskTimeoutException or IOException)
        {
            Log.Fatal("nydusd cannot restore its mount table: {Error} (journal {Journal})", e.Message, journalFiles.JournalPath);
        }
        if (daemonStopped.IsCompleted) return;
        settings.Outcome.Fail("the daemon journal could not be read after the start");
        daemon.Tell(TriggerStop.Instance);
    }

    /// <summary>The recovered record, or null when the daemon stopped first (a journal that cannot be read stops it,
    /// leaving the cause in its outcome) or none came within <paramref name="timeout"/>. Asks again every few seconds:
    /// a question that reaches a journal just replaced after a failed write is lost with it.</summary>
    private static async Task<DaemonRecord?> RecoverJournalAsync(IActorRef daemon, Task daemonStopped, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline && !daemonStopped.IsCompleted)
        {
            var ask = daemon.Ask<DaemonRecord>(GetDaemonRecord.Instance, TimeSpan.FromSeconds(5));
            try
            {
                if (await Task.WhenAny(ask, daemonStopped) == ask) return await ask;
            }
            catch (AskTimeoutException)
            {
            }
        }
        return null;
    }

    /// <summary>SIGTERM, SIGINT and SIGQUIT shut down through the state machine (upstream's trigger_stop, which
    /// unmounts), instead of the runtime's default of ending the process at once.</summary>
    private static IDisposable RegisterShutdownSignals(IActorRef daemon, SystemdNotifier systemd)
    {
        var registrations = new List<PosixSignalRegistration>();
        foreach (var signal in new[] { PosixSignal.SIGTERM, PosixSignal.SIGINT, PosixSignal.SIGQUIT })
        {
            registrations.Add(PosixSignalRegistration.Create(signal, context =>
            {
                context.Cancel = true;
                Log.Information("Received {Signal}, shutting down", context.Signal);
                systemd.Stopping($"stopping on {context.Signal}");
                daemon.Tell(TriggerStop.Instance);
            }));
        }
        return new CompositeDisposable(registrations);
    }

    private static CreatedDirectory ResolveWorkDir(NydusdOptions options, out bool temporary)
    {
        temporary = false;
        string dir;
        if (options.WorkDir is not null) dir = options.WorkDir;
        else if (options.Id is not null) dir = DefaultWorkDirFor(options.Id);
        else
        {
            // Without an id nothing could find this state again, so it lives only as long as the process.
            dir = Path.Combine(Path.GetTempPath(), $"nydusd-{Environment.ProcessId}-{Guid.NewGuid():N}");
            temporary = true;
        }
        // Owner-only when this daemon makes it: the journal in it holds mount commands.
        return CreatedDirectory.Create(dir, JournalFiles.DirMode);
    }

    /// <summary>State follows from --id, so a daemon restarted with the same arguments finds it again.</summary>
    public static string DefaultWorkDirFor(string id)
    {
        var root = Environment.UserName == "root" || Environment.GetEnvironmentVariable("USER") == "root"
            ? "/var/lib/nydus"
            : Path.Combine(Environment.GetEnvironmentVariable("XDG_STATE_HOME")
                           ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".local", "state"), "nydus");
        return Path.Combine(root, "daemons", id);
    }

    private static bool TrySetLevel(LoggingLevelSwitch levelSwitch, string level)
    {
        switch (level.ToLowerInvariant())
        {
            // Serilog has no "off"; Fatal is as quiet as it gets.
            case "off": levelSwitch.MinimumLevel = LogEventLevel.Fatal; return true;
            case "error": case "warn": case "info": case "debug": case "trace":
                levelSwitch.MinimumLevel = ToSerilogLevel(level); return true;
            default: return false;
        }
    }

    private static LogEventLevel ToSerilogLevel(string level) => level.ToLowerInvariant() switch
    {
        "trace" => LogEventLevel.Verbose,
        "debug" => LogEventLevel.Debug,
        "warn" => LogEventLevel.Warning,
        "error" => LogEventLevel.Error,
        _ => LogEventLevel.Information,
    };

    private static string ToAkkaLevel(string level) => level switch
    {
        "trace" or "debug" => "DEBUG",
        "warn" => "WARNING",
        "error" => "ERROR",
        _ => "INFO",
    };

    private static void TryDelete(string dir)
    {
        try { Directory.Delete(dir, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }

    private sealed class CompositeDisposable(List<PosixSignalRegistration> items) : IDisposable
    {
        public void Dispose() => items.ForEach(i => i.Dispose());
    }
}
