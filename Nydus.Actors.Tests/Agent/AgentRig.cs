using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text.Json;
using Nydus.Actors.Api;
using Nydus.Actors.Fuse.Session;
using Nydus.Actors.Tests.Support;
using Nydus.Actors.Tests.Upgrade;

namespace Nydus.Actors.Tests.Agent;

/// <summary>
/// A real `nydusd agent` process (the test output's nydusd) on a temp state dir, managing one daemon that serves a
/// generated EROFS image (<see cref="GeneratedTree"/>). Disposing SIGKILLs every agent it started and every process
/// the agents started (from their spawn log and their last list: daemons, failover successors, standbys), aborts
/// the mount's FUSE connection by its id and detaches the mount, so a failing test leaves nothing behind and no
/// reader blocked. A watchdog aborts the connection at a deadline, whatever the test is doing.
/// </summary>
public sealed partial class AgentRig : IAsyncDisposable
{
    public static readonly TimeSpan Wait = TimeSpan.FromSeconds(60);
    public const string DaemonId = "d1";

    private static readonly TimeSpan Deadline = TimeSpan.FromMinutes(
        double.TryParse(Environment.GetEnvironmentVariable("NYDUS_TEST_RIG_MINUTES"), out var m) ? m : 8);

    private readonly TempDir _dir = new("agt");
    private readonly List<NydusdProcess> _agents = [];
    private readonly HashSet<int> _listedPids = [];
    private readonly Timer _watchdog;
    private uint? _connection;
    // Daemons added beside d1 (AddDaemonAsync): their trees and FUSE connections, cleaned up like d1's.
    private readonly List<(string Id, GeneratedTree Tree, uint? Connection)> _more = [];
    // A fleet test's agent: started inside this network namespace, with these arguments before `agent` (--hocon).
    private string? _networkNamespace;
    private string[] _globalArgs = [];

    private AgentRig()
    {
        Tree = new GeneratedTree(_dir.Path);
        _watchdog = new Timer(_ => AbortConnection(), null, Deadline, Timeout.InfiniteTimeSpan);
    }

    public GeneratedTree Tree { get; }
    public string StateDir => _dir.Combine("state");
    public string Socket => _dir.Combine("agent.sock");
    public NydusdProcess Agent { get; private set; } = null!;
    public uint? ConnectionId => _connection;

    /// <summary>An agent with one managed daemon serving the tree, RUNNING, its fd held by the agent.</summary>
    public static Task<AgentRig> StartAsync(bool hotStandby, params string[] daemonArgs) => StartAsync(new AgentRig(), hotStandby, daemonArgs);

    /// <summary>The same, with the agent inside network namespace <paramref name="networkNamespace"/> (null: this
    /// process's) and given <paramref name="hoconText"/> as its --hocon file (a fleet member, a journal elsewhere).</summary>
    public static Task<AgentRig> StartInNetworkNamespaceAsync(string? networkNamespace, string hoconText)
    {
        var rig = new AgentRig { _networkNamespace = networkNamespace };
        var hocon = rig._dir.Combine("agent.conf");
        File.WriteAllText(hocon, hoconText);
        rig._globalArgs = ["--hocon", hocon];
        return StartAsync(rig, hotStandby: false, []);
    }

    private static async Task<AgentRig> StartAsync(AgentRig rig, bool hotStandby, string[] daemonArgs)
    {
        try
        {
            await rig.StartAgentAsync(hotStandby);
            var (status, body) = await rig.SendAsync("POST", "/api/v1/agent/daemons",
                JsonSerializer.Serialize(new { id = DaemonId, args = rig.DaemonArgs(daemonArgs) }));
            if (status != 201) throw new InvalidOperationException($"POST daemon answered {status}: {body}\n{rig.Agent.Output}");
            rig._connection = FuseMount.FindConnectionId(rig.Tree.MountPoint);
            if (hotStandby) await rig.WaitForDaemonAsync(d => d.GetProperty("standby_pid").ValueKind == JsonValueKind.Number, "a hot standby");
            return rig;
        }
        catch
        {
            await rig.DisposeAsync();
            throw;
        }
    }

    public string[] DaemonArgs(params string[] more) => DaemonArgs(Tree, more);

    private static string[] DaemonArgs(GeneratedTree tree, params string[] more) =>
        ["-M", tree.MountPoint, "--bootstrap", tree.Image, "--localfs-dir", tree.Source, "--thread-num", "4", .. more];

    /// <summary>Another daemon of this agent, serving its own generated tree (running, its fd held, when this returns).</summary>
    public async Task<GeneratedTree> AddDaemonAsync(string id)
    {
        var tree = new GeneratedTree(_dir.Combine(id));
        var (status, body) = await SendAsync("POST", "/api/v1/agent/daemons", JsonSerializer.Serialize(new { id, args = DaemonArgs(tree) }));
        lock (_more) _more.Add((id, tree, status == 201 ? FuseMount.FindConnectionId(tree.MountPoint) : null));
        if (status != 201) throw new InvalidOperationException($"POST daemon {id} answered {status}: {body}\n{Agent.Output}");
        return tree;
    }

    /// <summary>Starts an agent process on the rig's state dir and waits until its API answers (within
    /// <paramref name="wait"/>, <see cref="Wait"/> by default).</summary>
    public async Task StartAgentAsync(bool hotStandby, TimeSpan? wait = null)
    {
        string[] args = [.. _globalArgs, "agent", "--state-dir", StateDir, "--sock", Socket, .. hotStandby ? new[] { "--hot-standby" } : []];
        var agent = _networkNamespace is null ? NydusdProcess.Start(args) : NydusdProcess.StartInNetworkNamespace(_networkNamespace, args);
        lock (_agents) _agents.Add(agent);
        Agent = agent;
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            if (agent.HasExited) throw new InvalidOperationException($"the agent exited:\n{agent.Output}");
            if (ApiSocket.IsLive(Socket))
            {
                try
                {
                    var (status, _) = await SendAsync("GET", "/api/v1/agent/daemons");
                    if (status == 200) return;
                }
                catch (HttpRequestException)
                {
                }
            }
            if (deadline.Elapsed > (wait ?? Wait)) throw new TimeoutException($"the agent's API did not answer within {wait ?? Wait}:\n{agent.Output}");
            await Task.Delay(50);
        }
    }

    public async Task<(int Status, string Body)> SendAsync(string method, string path, string? body = null)
    {
        using var client = new ApiClient(Socket, TimeSpan.FromMinutes(3));
        return await client.SendAsync(method, path, body);
    }

    /// <summary>The agent's entry for the daemon (and every pid it names is remembered for cleanup).</summary>
    public async Task<JsonElement> DaemonAsync(string id = DaemonId)
    {
        var (status, body) = await SendAsync("GET", $"/api/v1/agent/daemons/{id}");
        if (status != 200) throw new InvalidOperationException($"GET daemon {id} answered {status}: {body}");
        var daemon = JsonDocument.Parse(body).RootElement.Clone();
        Remember(daemon);
        return daemon;
    }

    /// <summary>Polls the agent's entry until <paramref name="condition"/> holds (bounded).</summary>
    public async Task<JsonElement> WaitForDaemonAsync(Func<JsonElement, bool> condition, string what, string id = DaemonId)
    {
        var deadline = Stopwatch.StartNew();
        JsonElement last = default;
        while (deadline.Elapsed < Wait)
        {
            try
            {
                last = await DaemonAsync(id);
                if (condition(last)) return last;
            }
            catch (HttpRequestException)
            {
                // An agent being restarted.
            }
            await Task.Delay(20);
        }
        throw new TimeoutException($"daemon {id} did not reach {what} within {Wait}; last entry {last}\n{Agent.Output}");
    }

    /// <summary>Running, the fd held, <paramref name="failovers"/> failovers counted (and a standby when asked).</summary>
    public Task<JsonElement> WaitForServingAsync(int failovers, bool standby) =>
        WaitForDaemonAsync(d => d.GetProperty("state").GetString() == "running" && d.GetProperty("fd_held").GetBoolean()
                                && d.GetProperty("failovers").GetInt32() == failovers
                                && (!standby || d.GetProperty("standby_pid").ValueKind == JsonValueKind.Number),
            $"running with its fd held after {failovers} failovers{(standby ? " and a standby" : "")}");

    /// <summary>SIGKILLs the serving daemon; returns the time until a read with the page cache dropped (which the
    /// daemon must answer) succeeded. The agent's failover has to happen in between.</summary>
    public async Task<TimeSpan> KillDaemonAsync()
    {
        var pid = (await DaemonAsync()).GetProperty("pid").GetInt32();
        var watch = Stopwatch.StartNew();
        if (kill(pid, NydusdProcess.SIGKILL) != 0) throw new InvalidOperationException($"kill({pid}) failed");
        await Task.Run(Tree.ReadOneByte).WaitAsync(Wait);
        return watch.Elapsed;
    }

    /// <summary>Fails every pending and future request of the mount (readers wake with ENOTCONN).</summary>
    public void AbortConnection()
    {
        Abort(_connection, Tree);
        lock (_more)
            foreach (var (_, tree, connection) in _more) Abort(connection, tree);
    }

    private static void Abort(uint? mounted, GeneratedTree tree)
    {
        if (mounted is not { } connection) return;
        // Connection ids are reused once a connection ends: never abort one that another mount now uses.
        if (MountInfoEntry.ReadAll().Any(e => e.IsFuse && e.Minor == connection && e.MountPoint != Path.GetFullPath(tree.MountPoint))) return;
        try { FuseMount.Abort(connection); } catch (Nydus.Actors.Fuse.FuseException) { }
    }

    /// <summary>Unmounts the tree's mount if it is still there (lazily when busy); mountinfo is read, the mountpoint
    /// never stat()ed.</summary>
    private static void Detach(GeneratedTree tree)
    {
        try { FuseMount.Unmount(tree.MountPoint); } catch (Nydus.Actors.Fuse.FuseException) { }
    }

    public static string Summary(IEnumerable<TimeSpan> times)
    {
        var sorted = times.OrderBy(t => t).ToList();
        return sorted.Count == 0 ? "none"
            : $"median {sorted[sorted.Count / 2].TotalMilliseconds:F0} ms, max {sorted[^1].TotalMilliseconds:F0} ms "
              + $"(all: {string.Join(", ", sorted.Select(t => t.TotalMilliseconds.ToString("F0")))})";
    }

    private void Remember(JsonElement daemon)
    {
        lock (_listedPids)
        {
            if (daemon.GetProperty("pid").GetInt32() is > 0 and var pid) _listedPids.Add(pid);
            if (daemon.GetProperty("standby_pid") is { ValueKind: JsonValueKind.Number } standby) _listedPids.Add(standby.GetInt32());
        }
    }

    /// <summary>Every process the agents started that is still the one they started ("pid starttime role id" lines),
    /// plus every pid a list named (checked to be a nydusd by its command line).</summary>
    private IEnumerable<int> StartedDaemons()
    {
        var spawnLog = Path.Combine(StateDir, "spawned.log");
        var pids = new HashSet<int>();
        if (File.Exists(spawnLog))
        {
            foreach (var line in File.ReadAllLines(spawnLog))
            {
                var fields = line.Split(' ');
                if (fields.Length >= 2 && int.TryParse(fields[0], out var pid) && long.TryParse(fields[1], out var start)
                    && Nydus.Actors.Agent.AgentProcesses.IsAlive(pid, start))
                    pids.Add(pid);
            }
        }
        lock (_listedPids)
        {
            foreach (var pid in _listedPids)
            {
                try
                {
                    if (File.ReadAllText($"/proc/{pid}/cmdline").Contains(StateDir, StringComparison.Ordinal)) pids.Add(pid);
                }
                catch (IOException)
                {
                }
            }
        }
        return pids;
    }

    public async ValueTask DisposeAsync()
    {
        await _watchdog.DisposeAsync();
        // The agents first, so that nothing starts another daemon; then everything they started.
        List<NydusdProcess> agents;
        lock (_agents) agents = [.. _agents];
        foreach (var agent in agents.Where(a => !a.HasExited))
        {
            try { agent.Signal(NydusdProcess.SIGKILL); } catch (InvalidOperationException) { }
        }
        foreach (var agent in agents)
        {
            try { await agent.WaitForExitAsync(TimeSpan.FromSeconds(15)); } catch (TimeoutException) { }
        }
        var daemons = StartedDaemons().ToList();
        foreach (var pid in daemons) kill(pid, NydusdProcess.SIGKILL);

        // Requests a killed daemon had read stay pending while anyone holds the fd: aborting the connection fails
        // them (and any blocked reader) with ENOTCONN, so every killed process can finish exiting.
        AbortConnection();
        var deadline = Stopwatch.StartNew();
        while (daemons.Any(pid => Directory.Exists($"/proc/{pid}")) && deadline.Elapsed < TimeSpan.FromSeconds(15))
            await Task.Delay(50);
        Detach(Tree);
        lock (_more)
            foreach (var (_, tree, _) in _more) Detach(tree);

        if (Environment.GetEnvironmentVariable("NYDUS_TEST_DAEMON_LOGS") is { } logs)
        {
            foreach (var log in Directory.Exists(StateDir) ? Directory.GetFiles(StateDir, "daemon.log", SearchOption.AllDirectories) : [])
            {
                try { File.Copy(log, Path.Combine(logs, $"agent-{Path.GetFileName(_dir.Path)}-{Path.GetFileName(Path.GetDirectoryName(log))}.log"), true); }
                catch (IOException) { }
            }
            foreach (var agent in agents)
            {
                try { File.WriteAllText(Path.Combine(logs, $"agent-{Path.GetFileName(_dir.Path)}-agent-{agents.IndexOf(agent)}.log"), agent.Output); }
                catch (IOException) { }
            }
        }
        foreach (var agent in agents) await agent.DisposeAsync();
        _dir.Dispose();
    }

    /// <summary>SIGKILL by pid (for processes the agent started); 0 on success.</summary>
    public static int Kill(int pid) => kill(pid, NydusdProcess.SIGKILL);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int kill(int pid, int signal);
}
