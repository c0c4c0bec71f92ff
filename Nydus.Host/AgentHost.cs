using System.Runtime.InteropServices;
using Akka.Actor;
using Nydus.Actors.Agent;
using Nydus.Actors.Api;
using Nydus.Actors.Daemon;
using Serilog;
using Serilog.Events;

namespace Nydus.Host;

/// <summary>What `nydusd agent` was given.</summary>
public sealed record AgentOptions(string StateDir, string Socket, bool HotStandby, string LogLevel, string? LogFile, string? HoconFile);

/// <summary>
/// `nydusd agent`: the node agent process. Its actor system (journal in --state-dir), the <see cref="NodeAgentActor"/>
/// and the agent API on --sock. SIGTERM/SIGINT end the agent only: the daemons it manages keep running (their own
/// sessions), and a later agent on the same state dir re-attaches to them.
/// </summary>
public static class AgentHost
{
    public static async Task<int> RunAsync(AgentOptions options, CancellationToken _)
    {
        var configuration = new LoggerConfiguration()
            .Enrich.With<ControlCharacterEscaper>()
            .MinimumLevel.Is(options.LogLevel switch
            {
                "trace" => LogEventLevel.Verbose, "debug" => LogEventLevel.Debug, "warn" => LogEventLevel.Warning,
                "error" => LogEventLevel.Error, _ => LogEventLevel.Information,
            })
            .WriteTo.Console(outputTemplate: "[{Timestamp:HH:mm:ss.fff} {Level:u3}] {Message:lj}{NewLine}{Exception}",
                standardErrorFromLevel: LogEventLevel.Verbose);
        if (options.LogFile is { } file)
            configuration = configuration.WriteTo.File(Path.HasExtension(file) ? file : file + ".log",
                outputTemplate: "[{Timestamp:o} {Level:u3}] {Message:lj}{NewLine}{Exception}");
        Log.Logger = configuration.CreateLogger();
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
        var stateDir = Path.GetFullPath(options.StateDir);
        Directory.CreateDirectory(stateDir);
        var akkaLevel = options.LogLevel switch { "trace" or "debug" => "DEBUG", "warn" => "WARNING", "error" => "ERROR", _ => "INFO" };
        var config = DaemonHocon.Load(Path.Combine(AppContext.BaseDirectory, "hocon"), stateDir, options.HoconFile, akkaLevel);
        if (ApiSocket.IsLive(options.Socket)) throw new IOException($"agent socket {options.Socket} is in use by a running agent");

        var settings = new AgentSettings(stateDir, options.HotStandby, OwnBinary(),
            config.GetTimeSpan("nydus.agent.step-timeout", TimeSpan.FromSeconds(30)));
        Log.Information("nydusd agent {Version} starting: state dir {StateDir}, socket {Socket}, hot standby {HotStandby}, daemons from {Binary}",
            DaemonVersion.PackageVersion, stateDir, options.Socket, options.HotStandby, settings.DefaultBinary);

        var stop = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var registrations = new[] { PosixSignal.SIGTERM, PosixSignal.SIGINT, PosixSignal.SIGQUIT }
            .Select(signal => PosixSignalRegistration.Create(signal, context =>
            {
                context.Cancel = true;
                Log.Information("Received {Signal}: the agent stops; its daemons keep running", context.Signal);
                stop.TrySetResult();
            }))
            .ToList();
        using var system = ActorSystem.Create("nydusd-agent", config);
        ApiServer? api = null;
        try
        {
            var agent = system.ActorOf(NodeAgentActor.Props(settings), "agent");
            api = await ApiServer.StartAsync(options.Socket, routes => AgentEndpoints.Map(routes, agent));
            await stop.Task;
            return 0;
        }
        finally
        {
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
