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
        var levelSwitch = new LoggingLevelSwitch(ToSerilogLevel(options.LogLevel));
        Log.Logger = CreateLogger(options, levelSwitch);
        var workDir = ResolveWorkDir(options, out var temporaryWorkDir);
        try
        {
            return await RunDaemonAsync(options, workDir, levelSwitch);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or Akka.Configuration.ConfigurationException
                                       or Nydus.Actors.Config.ConfigException or Nydus.Actors.Rafs.RafsException
                                       or Nydus.Actors.Storage.StorageException or Nydus.Actors.Fuse.FuseException)
        {
            Log.Fatal("nydusd cannot start: {Error}", e.Message);
            return 1;
        }
        finally
        {
            if (temporaryWorkDir) TryDelete(workDir);
            await Log.CloseAndFlushAsync();
        }
    }

    private static async Task<int> RunDaemonAsync(NydusdOptions options, string workDir, LoggingLevelSwitch levelSwitch)
    {
        var openFiles = ProcessLimits.RaiseOpenFiles(options.RlimitNofile);
        var hoconDir = Path.Combine(AppContext.BaseDirectory, "hocon");
        var config = DaemonHocon.Load(hoconDir, workDir, options.HoconFile, ToAkkaLevel(options.LogLevel));
        Log.Information("nydusd {Version} starting: id {DaemonId}, work dir {WorkDir}, open files limit {OpenFiles}",
            DaemonVersion.PackageVersion, options.Id ?? "(none)", workDir, openFiles);

        // Refuse a live socket before anything else starts: a second daemon must not disturb the first.
        if (options.ApiSock is not null && ApiSocket.IsLive(options.ApiSock))
            throw new IOException($"API socket {options.ApiSock} is in use by a running daemon");

        // Read before any image is opened (the command line's is opened next).
        Nydus.Actors.Storage.Cache.BlobCacheSettings.DefaultReadAheadWindows =
            Math.Clamp(config.GetInt("nydus.blob-cache.read-ahead", 2), 0, 8);
        // Crash detection reads the old socket file, so it runs before the API server rebinds it.
        var takeover = UpgradeStart.Detect(options);
        var transferTimeout = config.GetTimeSpan("nydus.upgrade.transfer-timeout", TimeSpan.FromSeconds(10));
        // FUSE mode: the filesystem is opened and the kernel mount made before the daemon exists (upstream's order);
        // a takeover opens the filesystem only: the kernel mount and its fd come from the predecessor.
        var fuse = options.Singleton ? null
            : FuseServiceSetup.Prepare(options,
                UpgradeStart.HandoffSettings(options, transferTimeout, isFailover: takeover == TakeoverReason.Failover), takeover);
        // The actor system and the API server each take a few hundred milliseconds to come up: start both at once.
        var daemonReady = new TaskCompletionSource<IActorRef>(TaskCreationOptions.RunContinuationsAsynchronously);
        var apiStarting = options.ApiSock is null
            ? Task.FromResult<ApiServer?>(null)
            : StartApiAsync(options.ApiSock, daemonReady.Task, config, levelSwitch);
        ActorSystem system;
        try
        {
            system = ActorSystem.Create("nydusd", config);
        }
        catch
        {
            fuse?.Undo();
            daemonReady.SetCanceled();
            await DisposeQuietlyAsync(apiStarting);
            throw;
        }
        using var ownedSystem = system;
        var settings = new DaemonSettings(
            options.Id,
            options.Supervisor,
            options.Singleton ? DaemonKind.Singleton : DaemonKind.Fuse,
            workDir,
            ServiceProps: fuse?.ServiceProps,
            ActionTimeout: config.GetTimeSpan("nydus.daemon.action-timeout", TimeSpan.FromSeconds(30)))
        {
            Vfs = fuse?.Vfs,
            DeferStartRecord = takeover is not null,
            CommandLine = fuse?.CommandLine,
            CacheLimits = new Nydus.Actors.Storage.Cache.BlobCacheLimits(
                config.GetByteSize("nydus.blob-cache.disk-limit", 0) ?? 0,
                config.GetTimeSpan("nydus.blob-cache.check-interval", TimeSpan.FromSeconds(60))),
        };
        var daemon = system.ActorOf(DaemonActor.Props(settings), "daemon");
        daemonReady.SetResult(daemon);
        var daemonStopped = daemon.WatchAsync();

        ApiServer? api = null;
        try
        {
            try
            {
                api = await apiStarting;
            }
            catch
            {
                // No API, no daemon: take back what was set up, the kernel mount included.
                daemon.Tell(TriggerStop.Instance);
                await daemonStopped.WaitAsync(TimeSpan.FromSeconds(30)).ContinueWith(_ => { });
                // A daemon waiting for a takeover never owned the mount: it belongs to the predecessor.
                if (fuse is not null && takeover is null) FuseMount.Unmount(fuse.MountPoint);
                throw;
            }

            using var signals = RegisterShutdownSignals(daemon);

            // The journal recovers beside the start: nothing mounted so far comes from it, and a journal that fails
            // stops the daemon (it watches the journal), which this process then reports as a failed start.
            _ = LogRecordAsync(daemon, daemonStopped, settings.Outcome);

            // A daemon restarted with the same --id and work dir mounts again what the API had mounted, at the same
            // virtual mountpoints and instance indexes, before it serves (a failed one is logged; the rest serve).
            if (fuse is not null)
            {
                var restoring = daemon.Ask<Nydus.Actors.Daemon.Mounts.MountOperationResult>(
                    Nydus.Actors.Daemon.Mounts.RestoreMounts.Instance, TimeSpan.FromMinutes(5));
                // A daemon told to stop meanwhile (exit, a signal, a failed journal) never answers: stop waiting.
                if (await Task.WhenAny(restoring, daemonStopped) == restoring)
                    Log.Information("Mount table: {Result}", (await restoring).Message);
            }

            // A normal start sends itself Mount then Start (upstream: every daemon kind does); a takeover waits in INIT
            // for the supervisor's takeover and start.
            if (takeover is not null)
                Log.Information("nydusd is {State}, waiting for a takeover ({Reason})", DaemonState.Init.ToApiName(), takeover);
            foreach (var input in takeover is null ? new[] { DaemonInput.Mount, DaemonInput.Start } : [])
            {
                if (daemonStopped.IsCompleted) break;
                var result = await daemon.Ask<DaemonCommandResult>(new DaemonCommand(input), settings.ActionTimeout + TimeSpan.FromSeconds(5));
                if (!result.Succeeded)
                {
                    Log.Fatal("nydusd failed to start: {Error}", result.Error!.Message);
                    daemon.Tell(TriggerStop.Instance);
                    await daemonStopped.WaitAsync(TimeSpan.FromSeconds(30));
                    return 1;
                }
            }
            if (takeover is null) Log.Information("nydusd is {State}", DaemonState.Running.ToApiName());

            await daemonStopped;
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
            if (api is not null) await api.DisposeAsync();
            await system.Terminate().WaitAsync(TimeSpan.FromSeconds(15));
        }
    }

    private static Task<ApiServer?> StartApiAsync(string socket, Task<IActorRef> daemon, Akka.Configuration.Config config, LoggingLevelSwitch levelSwitch)
    {
        var askTimeout = config.GetTimeSpan("nydus.api.ask-timeout", TimeSpan.FromSeconds(30));
        var context = new ApiContext(daemon, askTimeout, level => TrySetLevel(levelSwitch, level), ErrorEventLog.Shared)
        {
            MountTimeout = config.GetTimeSpan("nydus.api.mount-timeout", TimeSpan.FromMinutes(2)),
        };
        return Task.Run(async () => (ApiServer?)await ApiServer.StartAsync(socket, context));
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

    /// <summary>Reports the recovered record once the journal has it; a journal that cannot recover within 30 s
    /// stops the daemon (a daemon that cannot record its mounts must not pretend to keep them).</summary>
    private static async Task LogRecordAsync(IActorRef daemon, Task daemonStopped, DaemonOutcome outcome)
    {
        try
        {
            var ask = daemon.Ask<DaemonRecord>(GetDaemonRecord.Instance, TimeSpan.FromSeconds(30));
            if (await Task.WhenAny(ask, daemonStopped) != ask) return;
            var record = await ask;
            Log.Information("Daemon record: {StartCount} starts, {MountCount} mounts recorded", record.StartCount, record.Mounts.Count);
        }
        catch (AskTimeoutException)
        {
            if (daemonStopped.IsCompleted) return;
            outcome.Fail("the daemon's persisted state could not be recovered within 30 s");
            daemon.Tell(TriggerStop.Instance);
        }
    }

    /// <summary>SIGTERM, SIGINT and SIGQUIT shut down through the state machine (upstream's trigger_stop, which
    /// unmounts), instead of the runtime's default of ending the process at once.</summary>
    private static IDisposable RegisterShutdownSignals(IActorRef daemon)
    {
        var registrations = new List<PosixSignalRegistration>();
        foreach (var signal in new[] { PosixSignal.SIGTERM, PosixSignal.SIGINT, PosixSignal.SIGQUIT })
        {
            registrations.Add(PosixSignalRegistration.Create(signal, context =>
            {
                context.Cancel = true;
                Log.Information("Received {Signal}, shutting down", context.Signal);
                daemon.Tell(TriggerStop.Instance);
            }));
        }
        return new CompositeDisposable(registrations);
    }

    private static string ResolveWorkDir(NydusdOptions options, out bool temporary)
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
        Directory.CreateDirectory(dir);
        return Path.GetFullPath(dir);
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

    private static Serilog.ILogger CreateLogger(NydusdOptions options, LoggingLevelSwitch levelSwitch)
    {
        var configuration = new LoggerConfiguration()
            .Enrich.With<ControlCharacterEscaper>()
            .MinimumLevel.ControlledBy(levelSwitch)
            .Enrich.FromLogContext()
            .WriteTo.Console(outputTemplate: "[{Timestamp:HH:mm:ss.fff} {Level:u3}] {Message:lj}{NewLine}{Exception}",
                standardErrorFromLevel: LogEventLevel.Verbose);
        if (options.LogFile is { } file)
        {
            if (!Path.HasExtension(file)) file += ".log";
            configuration = configuration.WriteTo.File(file, outputTemplate: "[{Timestamp:o} {Level:u3}] {Message:lj}{NewLine}{Exception}");
        }
        return configuration.CreateLogger();
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
