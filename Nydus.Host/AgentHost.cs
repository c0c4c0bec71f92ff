using System.Runtime.InteropServices;
using Akka.Actor;
using Nydus.Actors.Agent;
using Nydus.Actors.Agent.Fleet;
using Nydus.Actors.Api;
using Nydus.Actors.Daemon;
using Nydus.Actors.Daemon.Persistence;
using Serilog;
using Serilog.Events;

namespace Nydus.Host;

/// <summary>What `nydusd agent` was given.</summary>
public sealed record AgentOptions(string StateDir, string Socket, bool HotStandby, string LogLevel, string? LogFile, string? HoconFile,
    int LogRotationSize = 0, bool JournalRepair = false);

/// <summary>
/// `nydusd agent`: the node agent process. Its actor system (journal in --state-dir), the <see cref="NodeAgentActor"/>
/// and the agent API on --sock. SIGTERM/SIGINT end the agent only: the daemons it manages keep running (their own
/// sessions), and a later agent on the same state dir re-attaches to them. With <c>nydus.agent.cluster</c> enabled it
/// is also a member of the fleet (<see cref="FleetNode"/>), which it leaves gracefully on those signals.
/// </summary>
public static class AgentHost
{
    public static async Task<int> RunAsync(AgentOptions options, CancellationToken _)
    {
        var levelSwitch = new Serilog.Core.LoggingLevelSwitch(options.LogLevel switch
        {
            "trace" => LogEventLevel.Verbose, "debug" => LogEventLevel.Debug, "warn" => LogEventLevel.Warning,
            "error" => LogEventLevel.Error, _ => LogEventLevel.Information,
        });
        Log.Logger = NydusdLogging.Create(levelSwitch, options.LogFile, options.LogRotationSize);
        try
        {
            return await RunAgentAsync(options);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or Akka.Configuration.ConfigurationException)
        {
            Log.Fatal("nydusd agent cannot start: {Error}", e.Message);
            return 1;
        }
        finally
        {
            await Log.CloseAndFlushAsync();
        }
    }

    private static async Task<int> RunAgentAsync(AgentOptions options)
    {
        // Owner-only, like a daemon's work dir: the agent's journal holds its daemons' command lines.
        var createdStateDir = CreatedDirectory.Create(options.StateDir, JournalFiles.DirMode);
        var stateDir = createdStateDir.Path;
        using var systemd = SystemdNotifier.FromEnvironment();
        var served = false;
        try
        {
            return await ServeAsync(options, stateDir, systemd, () => served = true);
        }
        finally
        {
            // A start that failed takes back the state directory it made; one that served keeps its journal.
            if (!served) createdStateDir.RemoveCreated();
        }
    }

    private static async Task<int> ServeAsync(AgentOptions options, string stateDir, SystemdNotifier systemd, Action served)
    {
        var akkaLevel = options.LogLevel switch { "trace" or "debug" => "DEBUG", "warn" => "WARNING", "error" => "ERROR", _ => "INFO" };
        var hoconFile = DaemonHocon.ResolveUserFile(options.HoconFile, Environment.GetEnvironmentVariable(DaemonHocon.EnvironmentVariable));
        var config = DaemonHocon.Load(Path.Combine(AppContext.BaseDirectory, "hocon"), stateDir, hoconFile, akkaLevel,
            logToFileOnly: options.LogFile is not null);
        if (ApiSocket.IsLive(options.Socket)) throw new IOException($"agent socket {options.Socket} is in use by a running agent");
        // The same checks as a daemon's: a damaged journal is refused in one attempt, naming the file.
        var journalFiles = new JournalFiles(stateDir);
        JournalStartup.Prepare(journalFiles, config, options.JournalRepair, sealsConfigs: false);

        var recoveryFailure = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        var settings = new AgentSettings(stateDir, options.HotStandby, OwnBinary(),
            config.GetTimeSpan("nydus.agent.step-timeout", TimeSpan.FromSeconds(30)))
        {
            RecoveryFailed = why => recoveryFailure.TrySetResult(why),
            PersistenceId = config.GetString("nydus.agent.persistence-id", "nydusd-agent") is { Length: > 0 } id ? id : "nydusd-agent",
        };
        // Read before anything starts: a cluster block with a bad value ends the start with the key named.
        var fleetSettings = FleetSettings.From(config);
        Log.Information("nydusd agent {Version} starting: state dir {StateDir}, socket {Socket}, hot standby {HotStandby}, daemons from {Binary}",
            DaemonVersion.PackageVersion, stateDir, options.Socket, options.HotStandby, settings.DefaultBinary);

        var stop = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var registrations = new[] { PosixSignal.SIGTERM, PosixSignal.SIGINT, PosixSignal.SIGQUIT }
            .Select(signal => PosixSignalRegistration.Create(signal, context =>
            {
                context.Cancel = true;
                Log.Information("Received {Signal}: the agent stops; its daemons keep running", context.Signal);
                systemd.Stopping($"stopping on {context.Signal}; daemons keep running");
                stop.TrySetResult();
            }))
            .ToList();
        ActorSystem system;
        try
        {
            system = ActorSystem.Create("nydusd-agent", config);
        }
        catch (ArgumentException e)
        {
            registrations.ForEach(r => r.Dispose());
            throw new Akka.Configuration.ConfigurationException($"invalid actor system configuration: {e.Message}", e);
        }
        using var ownedSystem = system;
        ApiServer? api = null;
        FleetNode? fleet = null;
        try
        {
            var agent = system.ActorOf(NodeAgentActor.Props(settings), "agent");
            // The journal is read before the API serves: an agent whose list of daemons cannot be read refuses to
            // start, naming the file and what to do, instead of answering its API with nobody behind it.
            var recovered = agent.Ask<AgentReply>(ListManagedDaemons.Instance,
                config.GetTimeSpan("nydus.journal.recovery-timeout", TimeSpan.FromSeconds(60)));
            if (await Task.WhenAny(recovered, recoveryFailure.Task) != recovered || !recovered.IsCompletedSuccessfully)
            {
                var why = recoveryFailure.Task.IsCompleted ? await recoveryFailure.Task : "its journal was not read in time";
                Log.Fatal("nydusd agent cannot start: {Error} (journal {Journal}); {Hint}", why, journalFiles.JournalPath, journalFiles.RepairHint);
                return 1;
            }
            // The cluster only when configured: a single agent never loads Akka.Remote (start-up time, memory).
            if (fleetSettings is not null)
                fleet = FleetNode.Start(fleetSettings, config, Path.Combine(AppContext.BaseDirectory, "hocon"), agent,
                    DaemonVersion.PackageVersion, Log.Logger);
            api = await ApiServer.StartAsync(options.Socket, routes => AgentEndpoints.Map(routes, agent, fleet),
                idleTimeout: DaemonHost.ApiIdleTimeout(config));
            served();
            systemd.Ready("serving the agent API");
            systemd.StartWatchdog(async token =>
                await agent.Ask<object>(new Identify(null), TimeSpan.FromSeconds(5), token) is ActorIdentity { Subject: not null });
            await stop.Task;
            return 0;
        }
        finally
        {
            // Graceful leave first: the others see this node leave instead of becoming unreachable.
            if (fleet is not null) await fleet.LeaveAsync(TimeSpan.FromSeconds(15));
            if (api is not null) await api.DisposeAsync();
            await system.Terminate().WaitAsync(TimeSpan.FromSeconds(15)).ContinueWith(_ => { });
            registrations.ForEach(r => r.Dispose());
        }
    }

    /// <summary>The nydusd binary this agent runs as (daemons start from it unless an upgrade names another).</summary>
    private static string OwnBinary()
    {
        var path = Environment.ProcessPath;
        return path is not null && Path.GetFileNameWithoutExtension(path) != "dotnet"
            ? path
            : Path.Combine(AppContext.BaseDirectory, "nydusd");
    }
}
