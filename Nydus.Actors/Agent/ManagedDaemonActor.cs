using System.Diagnostics;
using Akka.Actor;
using Akka.Event;
using Nydus.Actors.Api;
using Nydus.Actors.Fuse.Session;
using Nydus.Actors.Upgrade;

namespace Nydus.Actors.Agent;

/// <summary>Settings of the node agent that its per-daemon actors share.</summary>
/// <param name="StateDir">Where the agent keeps its journal, the daemons' sockets, work dirs and logs.</param>
/// <param name="HotStandby">Keep a second process per daemon waiting in INIT (<c>--upgrade</c>) to take over.</param>
/// <param name="DefaultBinary">The nydusd binary daemons are started from unless an upgrade names another.</param>
/// <param name="StepTimeout">Bound of each wait on a daemon (a state, an exit, a transfer).</param>
public sealed record AgentSettings(string StateDir, bool HotStandby, string DefaultBinary, TimeSpan StepTimeout)
{
    /// <summary>Every process the agent starts is appended here ("pid starttime role id"), for operators and test sweeps.</summary>
    public string SpawnLog => Path.Combine(StateDir, "spawned.log");

    /// <summary>Told, once, why the agent's journal could not be replayed (the host then refuses to start, naming the
    /// file, rather than serve an API with no agent behind it).</summary>
    public Action<string>? RecoveryFailed { get; init; }

    /// <summary>The agent's persistence id (<c>nydus.agent.persistence-id</c>): every agent whose journal is in one
    /// shared database (PostgreSQL for a fleet) needs its own.</summary>
    public string PersistenceId { get; init; } = "nydusd-agent";
}

/// <summary>
/// One managed nydusd, under <see cref="NodeAgentActor"/>: listens on its supervisor socket (the agent holds a dup
/// of the FUSE fd after every <c>sendfd</c>), starts and watches its processes, fails it over when it dies (a hot
/// standby's takeover, or a restart with the same arguments), upgrades it, stops it. One operation at a time
/// (<c>ReceiveAsync</c>); runs on the blocking-I/O dispatcher (process starts, socket binds, /proc reads).
/// </summary>
public sealed class ManagedDaemonActor : ReceiveActor, IWithTimers
{
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly AgentSettings _settings;
    private readonly Dictionary<int, Process> _children = [];
    private ManagedDaemonRecord _record;
    private SupervisorServer? _supervisor;
    private ProcessWatcher? _primaryWatch;
    private ProcessWatcher? _standbyWatch;
    private string _state = ManagedStates.Starting;
    private string? _message;
    private bool _stopping;
    private int _standbyFailures;

    public ITimerScheduler Timers { get; set; } = null!;

    public ManagedDaemonActor(AgentSettings settings, ManagedDaemonRecord record)
    {
        _settings = settings;
        _record = record;
        ReceiveAsync<StartManaged>(_ => StartAsync(Sender));
        ReceiveAsync<AttachManaged>(_ => AttachAsync());
        ReceiveAsync<ManagedProcessExited>(OnExitedAsync);
        ReceiveAsync<EnsureStandby>(_ => EnsureStandbyAsync());
        ReceiveAsync<UpgradeManagedDaemon>(u => UpgradeAsync(u.Binary, Sender));
        ReceiveAsync<RemoveManagedDaemon>(_ => StopAsync(Sender));
    }

    public static Props Props(AgentSettings settings, ManagedDaemonRecord record) =>
        Akka.Actor.Props.Create(() => new ManagedDaemonActor(settings, record)).WithDispatcher("nydus.blocking-io");

    private string Id => _record.Id;

    // ---------------------------------------------------------------- start, attach

    private async Task StartAsync(IActorRef replyTo)
    {
        Directory.CreateDirectory(_record.DaemonDir);
        Directory.CreateDirectory(_record.WorkDir);
        _supervisor = new SupervisorServer(_record.SupervisorSocket, TimeSpan.FromSeconds(10));
        try
        {
            var (pid, start) = Launch(_record.Binary, _record.ApiSocket, upgrade: false, "primary");
            _record = _record with { Pid = pid, StartTime = start };
            WatchPrimary();
            Publish(persist: true);
            await WaitForStateAsync(_record.ApiSocket, "RUNNING", pid, start);
            await SendFdAsync(_record.ApiSocket);
        }
        catch (Exception e) when (IsStepFailure(e))
        {
            _log.Warning("Daemon {Id} failed to start: {Error}", Id, e.Message);
            _stopping = true;
            AgentProcesses.Signal(_record.Pid, _record.StartTime, AgentProcesses.SIGKILL);
            await AgentProcesses.WaitGoneAsync(_record.Pid, _record.StartTime, _settings.StepTimeout);
            replyTo.Tell(AgentReply.Fail(Api.ApiErrorKind.StartFailed, $"daemon {Id} failed to start: {e.Message}\n{LogTail()}"));
            Context.Parent.Tell(new ManagedGone(Id));
            Context.Stop(Self);
            return;
        }
        SetState(ManagedStates.Running, null);
        _log.Info("Daemon {Id} is running: pid {Pid}, mountpoint {MountPoint}, the agent holds its fd", Id, _record.Pid, _record.Mountpoint);
        replyTo.Tell(new AgentReply(201, View()));
        Self.Tell(EnsureStandby.Instance);
    }

    /// <summary>After an agent restart: find the daemon's processes again by pid and start time, serve its
    /// supervisor socket again and fetch a fresh copy of its fd.</summary>
    private async Task AttachAsync()
    {
        bool standbyAlive = _record.StandbyPid is { } sp && AgentProcesses.IsAlive(sp, _record.StandbyStartTime);
        bool primaryAlive = AgentProcesses.IsAlive(_record.Pid, _record.StartTime);
        if (!primaryAlive && _record.Successor is { } successor && AgentProcesses.IsAlive(successor.Pid, successor.StartTime))
        {
            await AdoptSuccessorAsync(successor);
            return;
        }
        // A successor whose old process is still alive (the agent died before telling it to exit) is ended below as a
        // leftover: the old one serves on. One that died too has nothing left to adopt.
        _record = _record with { Successor = null };
        if (!primaryAlive)
        {
            if (standbyAlive) await RetireStandbyAsync();
            _record = _record with { StandbyPid = null, StandbySocket = null };
            if (FuseMount.IsMounted(_record.Mountpoint))
            {
                SetState(ManagedStates.Lost, $"pid {_record.Pid} died while the agent was down; {_record.Mountpoint} is still mounted but nobody "
                    + "held its FUSE fd, so the kernel ended the connection: it cannot be failed over (DELETE detaches the mount)", persist: true);
                _log.Error("Daemon {Id}: {Message}", Id, _message);
            }
            else
            {
                SetState(ManagedStates.Failed, $"pid {_record.Pid} exited while the agent was down and {_record.Mountpoint} is not mounted", persist: true);
                _log.Warning("Daemon {Id}: {Message}", Id, _message);
            }
            return;
        }

        _supervisor = new SupervisorServer(_record.SupervisorSocket, TimeSpan.FromSeconds(10));
        WatchPrimary();
        if (standbyAlive) WatchStandby();
        else _record = _record with { StandbyPid = null, StandbySocket = null };
        try
        {
            await SendFdAsync(_record.ApiSocket);
            SetState(ManagedStates.Running, null, persist: true);
            _log.Info("Re-attached daemon {Id}: pid {Pid} is alive, the agent holds its fd again (standby {Standby})", Id, _record.Pid,
                _record.StandbyPid?.ToString() ?? "none");
            EndLeftovers();
        }
        catch (Exception e) when (IsStepFailure(e))
        {
            SetState(ManagedStates.Running, $"re-attached, but sendfd failed: {e.Message} (no failover possible until it succeeds)", persist: true);
            _log.Warning("Daemon {Id}: {Message}", Id, _message);
        }
        Self.Tell(EnsureStandby.Instance);
    }

    /// <summary>
    /// The agent was killed during an upgrade after the old process exited and before it recorded the new one as the
    /// daemon: the new one (recorded as the successor before the old one was told to exit) has taken the mount over
    /// and waits in READY for a start nobody would send, with readers' requests queued in the kernel. It becomes the
    /// daemon, on the binary the upgrade named: start (unless already RUNNING), sendfd, recorded. Should that fail it
    /// is ended, and the mount reported lost as for a daemon that died while the agent was down: never two processes
    /// serving one id.
    /// </summary>
    private async Task AdoptSuccessorAsync(UpgradeSuccessor successor)
    {
        var old = _record.Pid;
        var (pid, start, socket) = (successor.Pid, successor.StartTime, successor.ApiSocket);
        _record = _record with
        {
            Pid = pid, StartTime = start, ApiSocket = socket, Binary = successor.Binary, Successor = null, StandbyPid = null, StandbySocket = null,
        };
        _supervisor = new SupervisorServer(_record.SupervisorSocket, TimeSpan.FromSeconds(10));
        WatchPrimary();
        try
        {
            if (await DaemonStateAsync(socket) == "READY") Check(await PutAsync(socket, "/api/v1/daemon/start"), "start");
            await WaitForStateAsync(socket, "RUNNING", pid, start);
            await SendFdAsync(socket);
        }
        catch (Exception e) when (IsStepFailure(e))
        {
            _primaryWatch?.Dispose();
            _primaryWatch = null;
            AgentProcesses.Signal(pid, start, AgentProcesses.SIGKILL);
            await AgentProcesses.WaitGoneAsync(pid, start, _settings.StepTimeout);
            SetState(ManagedStates.Lost, $"pid {old} exited in an upgrade the agent did not finish, and its successor pid {pid} could not be "
                + $"started ({e.Message}); it was ended: {_record.Mountpoint} cannot be served again (DELETE detaches the mount)", persist: true);
            _log.Error("Daemon {Id}: {Message}", Id, _message);
            return;
        }
        SetState(ManagedStates.Running, null, persist: true);
        _log.Warning("Daemon {Id}: adopted pid {Pid} ({Binary}), the new process of an upgrade the agent was killed in after the old pid {Old} "
            + "had exited; it serves, the agent holds its fd", Id, pid, successor.Binary, old);
        EndLeftovers();
        Self.Tell(EnsureStandby.Instance);
    }

    /// <summary>
    /// Processes this agent started for the daemon that outlived an agent killed in the middle of an operation (an
    /// upgrade's new process waiting in INIT or READY, a standby being started): neither the recorded primary nor the
    /// standby, still alive (same pid and start time, from the spawn log). Ended once the re-attached primary has
    /// answered sendfd, i.e. it serves: nobody would ever start or retire them, and they hold a copy of the mount's
    /// fd. (Were the primary gone instead, a leftover that took over would be the only server: not touched then.)
    /// </summary>
    private void EndLeftovers()
    {
        if (!File.Exists(_settings.SpawnLog)) return;
        foreach (var line in File.ReadLines(_settings.SpawnLog))
        {
            if (line.Split(' ') is not [var p, var st, var role, var id] || id != Id || !int.TryParse(p, out var pid) || !long.TryParse(st, out var start))
                continue;
            if ((pid == _record.Pid && start == _record.StartTime) || (pid == _record.StandbyPid && start == _record.StandbyStartTime)) continue;
            if (AgentProcesses.Signal(pid, start, AgentProcesses.SIGKILL))
                _log.Warning("Daemon {Id}: ended pid {Pid} ({Role}), left over from an operation the agent did not finish before it restarted", Id, pid, role);
        }
    }

    // ---------------------------------------------------------------- failover

    private async Task OnExitedAsync(ManagedProcessExited exited)
    {
        DisposeChild(exited.Pid);
        if (exited.Pid == _record.StandbyPid && exited.StartTime == _record.StandbyStartTime)
        {
            _standbyWatch?.Dispose();
            _standbyWatch = null;
            _record = _record with { StandbyPid = null, StandbySocket = null };
            Publish(persist: true);
            if (!_stopping)
            {
                _log.Warning("Standby of daemon {Id} (pid {Pid}) exited; starting another", Id, exited.Pid);
                Self.Tell(EnsureStandby.Instance);
            }
            return;
        }
        if (exited.Pid != _record.Pid || exited.StartTime != _record.StartTime || _stopping) return;
        _primaryWatch?.Dispose();
        _primaryWatch = null;
        await FailOverAsync();
    }

    private async Task FailOverAsync()
    {
        var watch = Stopwatch.StartNew();
        var dead = _record.Pid;
        if (!FuseMount.IsMounted(_record.Mountpoint))
        {
            // Taken down on purpose (its own SIGTERM, an unmount): nothing to take over.
            SetState(ManagedStates.Failed, $"pid {dead} exited and {_record.Mountpoint} is not mounted", persist: true);
            _log.Warning("Daemon {Id}: {Message}", Id, _message);
            return;
        }
        if (_supervisor is not { HasState: true })
        {
            if (FuseMount.IsMounted(_record.Mountpoint))
                SetState(ManagedStates.Lost, $"pid {dead} died before the agent held its FUSE fd; {_record.Mountpoint} is still mounted "
                    + "but its connection is gone: it cannot be failed over (DELETE detaches the mount)", persist: true);
            else
                SetState(ManagedStates.Failed, $"pid {dead} exited and {_record.Mountpoint} is not mounted", persist: true);
            _log.Error("Daemon {Id}: {Message}", Id, _message);
            return;
        }

        SetState(ManagedStates.FailingOver, $"pid {dead} died; failing over");
        _log.Warning("Daemon {Id} (pid {Pid}) died; failing over (standby {Standby})", Id, dead, _record.StandbyPid?.ToString() ?? "none");
        string how;
        if (await TryStandbyTakeoverAsync())
        {
            how = "hot standby";
        }
        else
        {
            how = "restart";
            Exception? last = null;
            for (int attempt = 1; attempt <= 3; attempt++)
            {
                try
                {
                    await RestartAndTakeOverAsync();
                    last = null;
                    break;
                }
                catch (Exception e) when (IsStepFailure(e))
                {
                    last = e;
                    _log.Warning("Failover of daemon {Id}, attempt {Attempt}: {Error}", Id, attempt, e.Message);
                    AgentProcesses.Signal(_record.Pid, _record.StartTime, AgentProcesses.SIGKILL);
                    await AgentProcesses.WaitGoneAsync(_record.Pid, _record.StartTime, _settings.StepTimeout);
                }
            }
            if (last is not null)
            {
                SetState(ManagedStates.Failed, $"failover after pid {dead} died failed: {last.Message}", persist: true);
                _log.Error("Daemon {Id}: {Message}", Id, _message);
                return;
            }
        }

        _record = _record with { Failovers = _record.Failovers + 1 };
        SetState(ManagedStates.Running, null, persist: true);
        _log.Warning("Failover {Count} of daemon {Id} done ({How}): pid {Dead} -> {Pid} in {Elapsed} ms", _record.Failovers, Id, how, dead,
            _record.Pid, (long)watch.Elapsed.TotalMilliseconds);
        Self.Tell(EnsureStandby.Instance);
    }

    /// <summary>The standby (waiting in INIT) takes the fd over at once, draining with its failover policy
    /// (<c>takeover?failover=true</c>: a <c>--upgrade</c> daemon would not drain on its own).</summary>
    private async Task<bool> TryStandbyTakeoverAsync()
    {
        if (_record.StandbyPid is not { } pid || _record.StandbySocket is not { } socket) return false;
        var start = _record.StandbyStartTime;
        if (!AgentProcesses.IsAlive(pid, start)) return false;
        try
        {
            await TakeOverAsync(socket, failover: true);
            await WaitForStateAsync(socket, "READY", pid, start);
            Check(await PutAsync(socket, "/api/v1/daemon/start"), "start");
            await WaitForStateAsync(socket, "RUNNING", pid, start);
            _standbyWatch?.Dispose();
            _standbyWatch = null;
            _record = _record with { Pid = pid, StartTime = start, ApiSocket = socket, StandbyPid = null, StandbySocket = null };
            WatchPrimary();
            Publish(persist: true);
            await SendFdAsync(socket);
            return true;
        }
        catch (Exception e) when (IsStepFailure(e))
        {
            _log.Warning("Standby takeover of daemon {Id} (pid {Pid}) failed: {Error}; restarting instead", Id, pid, e.Message);
            _standbyWatch?.Dispose();
            _standbyWatch = null;
            AgentProcesses.Signal(pid, start, AgentProcesses.SIGKILL);
            await AgentProcesses.WaitGoneAsync(pid, start, _settings.StepTimeout);
            if (_record.Pid == pid)
            {
                // It had become the primary before failing: the restart below takes over from it.
                _primaryWatch?.Dispose();
                _primaryWatch = null;
            }
            _record = _record with { StandbyPid = null, StandbySocket = null };
            return false;
        }
    }

    /// <summary>Upstream's crash failover (§4.5): the same arguments again (no --upgrade); the daemon detects the
    /// crash (mountpoint mounted, API socket dead), waits in INIT; takeover (restore + drain); start; sendfd.</summary>
    private async Task RestartAndTakeOverAsync()
    {
        var socket = _record.ApiSocket;
        // Crash detection (§3) needs the dead daemon's socket file; one that went away (a graceful exit of a failed
        // successor) is stood in for by a plain file, which refuses connections just the same.
        if (!File.Exists(socket)) File.WriteAllBytes(socket, []);
        var (pid, start) = Launch(_record.Binary, socket, upgrade: false, "failover");
        _record = _record with { Pid = pid, StartTime = start };
        Publish(persist: true);
        await WaitForStateAsync(socket, "INIT", pid, start);
        await TakeOverAsync(socket, failover: false);
        await WaitForStateAsync(socket, "READY", pid, start);
        Check(await PutAsync(socket, "/api/v1/daemon/start"), "start");
        await WaitForStateAsync(socket, "RUNNING", pid, start);
        WatchPrimary();
        await SendFdAsync(socket);
    }

    // ---------------------------------------------------------------- hot standby

    private async Task EnsureStandbyAsync()
    {
        if (!_settings.HotStandby || _stopping || _state != ManagedStates.Running || _record.StandbyPid is not null) return;
        if (_standbyFailures >= 3) return;
        var socket = NextSocket("standby");
        int pid = 0;
        long start = 0;
        try
        {
            (pid, start) = Launch(_record.Binary, socket, upgrade: true, "standby");
            await WaitForStateAsync(socket, "INIT", pid, start);
            _record = _record with { StandbyPid = pid, StandbyStartTime = start, StandbySocket = socket };
            WatchStandby();
            _standbyFailures = 0;
            Publish(persist: true);
            _log.Info("Daemon {Id}: hot standby pid {Pid} waits in INIT on {Socket}", Id, pid, socket);
        }
        catch (Exception e) when (IsStepFailure(e))
        {
            _standbyFailures++;
            _log.Warning("Daemon {Id}: starting a hot standby failed ({Count}): {Error}", Id, _standbyFailures, e.Message);
            if (pid != 0) AgentProcesses.Signal(pid, start, AgentProcesses.SIGKILL);
            Timers.StartSingleTimer("standby-retry", EnsureStandby.Instance, TimeSpan.FromSeconds(2));
        }
    }

    /// <summary>Stops the standby without touching the mount (exit from INIT never unmounts), SIGKILL if it lingers.</summary>
    private async Task RetireStandbyAsync()
    {
        if (_record.StandbyPid is not { } pid) return;
        var start = _record.StandbyStartTime;
        _standbyWatch?.Dispose();
        _standbyWatch = null;
        if (_record.StandbySocket is { } socket && AgentProcesses.IsAlive(pid, start))
        {
            try { await PutAsync(socket, "/api/v1/daemon/exit"); }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException or IOException) { }
        }
        if (!await AgentProcesses.WaitGoneAsync(pid, start, TimeSpan.FromSeconds(10)))
        {
            AgentProcesses.Signal(pid, start, AgentProcesses.SIGKILL);
            await AgentProcesses.WaitGoneAsync(pid, start, _settings.StepTimeout);
        }
        _record = _record with { StandbyPid = null, StandbySocket = null };
        Publish(persist: true);
    }

    // ---------------------------------------------------------------- upgrade, stop

    /// <summary>Upstream's online upgrade (§4.5) with a new process (another binary if given): start it with
    /// --upgrade and its own API socket; INIT; takeover; READY; exit the old one; start; RUNNING; sendfd.</summary>
    private async Task UpgradeAsync(string? binary, IActorRef replyTo)
    {
        if (_state != ManagedStates.Running || _supervisor is not { HasState: true })
        {
            replyTo.Tell(AgentReply.Fail(Api.ApiErrorKind.WrongState, $"daemon {Id} is {_state}{(_supervisor is { HasState: true } ? "" : ", its fd is not held")}: cannot upgrade it now"));
            return;
        }
        binary ??= _record.Binary;
        if (!File.Exists(binary))
        {
            replyTo.Tell(AgentReply.Fail(Api.ApiErrorKind.BadRequest, $"binary {binary} does not exist"));
            return;
        }
        SetState(ManagedStates.Upgrading, null);
        await RetireStandbyAsync();
        var (oldPid, oldStart, oldSocket) = (_record.Pid, _record.StartTime, _record.ApiSocket);
        var socket = NextSocket("api");
        int pid = 0;
        long start = 0;
        bool oldExited = false;
        try
        {
            (pid, start) = Launch(binary, socket, upgrade: true, "upgrade");
            await WaitForStateAsync(socket, "INIT", pid, start);
            await TakeOverAsync(socket, failover: false);
            await WaitForStateAsync(socket, "READY", pid, start);
            // In the journal before the old one is told to exit: an agent killed from then until the new one is
            // recorded as the daemon adopts it when it restarts (AttachAsync), instead of leaving the mount to a
            // process that nobody starts.
            _record = _record with { Successor = new UpgradeSuccessor(pid, start, socket, binary) };
            await SavedAsync();
            // From here the old process must go: it stops answering, and the new one serves once started.
            _primaryWatch?.Dispose();
            _primaryWatch = null;
            Check(await PutAsync(oldSocket, "/api/v1/daemon/exit"), "exit of the old daemon");
            if (!await AgentProcesses.WaitGoneAsync(oldPid, oldStart, _settings.StepTimeout))
                throw new TimeoutException($"the old daemon (pid {oldPid}) did not exit within {_settings.StepTimeout}");
            oldExited = true;
            _record = _record with { Pid = pid, StartTime = start, ApiSocket = socket, Binary = binary, Successor = null };
            WatchPrimary();
            Publish(persist: true);
            Check(await PutAsync(socket, "/api/v1/daemon/start"), "start of the new daemon");
            await WaitForStateAsync(socket, "RUNNING", pid, start);
            await SendFdAsync(socket);
        }
        catch (Exception e) when (IsStepFailure(e))
        {
            _log.Warning("Upgrade of daemon {Id} failed: {Error}", Id, e.Message);
            _record = _record with { Successor = null };
            if (!oldExited)
            {
                // The old daemon still serves (or its exit will be seen as a crash): the new one goes.
                AgentProcesses.Signal(pid, start, AgentProcesses.SIGKILL);
                if (_primaryWatch is null && AgentProcesses.IsAlive(oldPid, oldStart)) WatchPrimary();
                else if (_primaryWatch is null) Self.Tell(new ManagedProcessExited(oldPid, oldStart));
                SetState(ManagedStates.Running, $"upgrade failed: {e.Message}", persist: true);
            }
            else
            {
                // The old one is gone and the new one failed to serve: fail over from the stored fd.
                AgentProcesses.Signal(pid, start, AgentProcesses.SIGKILL);
                SetState(ManagedStates.Running, $"upgrade failed after the old daemon exited: {e.Message}", persist: true);
            }
            replyTo.Tell(AgentReply.Fail(Api.ApiErrorKind.UpgradeFailed, $"upgrade of daemon {Id} failed: {e.Message}"));
            Self.Tell(EnsureStandby.Instance);
            return;
        }
        SetState(ManagedStates.Running, null, persist: true);
        _log.Info("Upgraded daemon {Id}: pid {Old} -> {New} ({Binary})", Id, oldPid, pid, binary);
        replyTo.Tell(new AgentReply(200, View()));
        Self.Tell(EnsureStandby.Instance);
    }

    /// <summary>DELETE: the standby exits, the daemon gets SIGTERM (it unmounts), the agent forgets it.</summary>
    private async Task StopAsync(IActorRef replyTo)
    {
        _stopping = true;
        SetState(ManagedStates.Stopping, null);
        await RetireStandbyAsync();
        _primaryWatch?.Dispose();
        _primaryWatch = null;
        var (pid, start) = (_record.Pid, _record.StartTime);
        if (AgentProcesses.Signal(pid, start, AgentProcesses.SIGTERM) && !await AgentProcesses.WaitGoneAsync(pid, start, _settings.StepTimeout))
        {
            _log.Warning("Daemon {Id} (pid {Pid}) did not exit on SIGTERM within {Timeout}; killing it", Id, pid, _settings.StepTimeout);
            AgentProcesses.Signal(pid, start, AgentProcesses.SIGKILL);
            await AgentProcesses.WaitGoneAsync(pid, start, _settings.StepTimeout);
        }
        // A lost daemon's mount (or one its daemon could not take down) is detached; mountinfo is read, the
        // mountpoint never stat()ed.
        try
        {
            if (FuseMount.Unmount(_record.Mountpoint)) _log.Info("Detached {MountPoint} of daemon {Id}", _record.Mountpoint, Id);
        }
        catch (Exception e) when (e is IOException or Fuse.FuseException)
        {
            _log.Warning("Detaching {MountPoint} of daemon {Id} failed: {Error}", _record.Mountpoint, Id, e.Message);
        }
        _supervisor?.Dispose();
        _supervisor = null;
        _log.Info("Daemon {Id} stopped and removed", Id);
        replyTo.Tell(new AgentReply(204, null));
        Context.Parent.Tell(new ManagedGone(Id));
        Context.Stop(Self);
    }

    // ---------------------------------------------------------------- helpers

    /// <summary>Appends to a log the agent keeps (a daemon's log, the spawn log), creating it 0600: a daemon's log
    /// holds its mount sources and paths. The daemon's output is appended after the first line, so the file exists,
    /// with this mode, before the daemon writes to it. O_APPEND: the daemons of one agent upgraded in one batch append
    /// their lines to the spawn log at the same moment, and a running daemon writes to its log beside the agent.</summary>
    private static void AppendOwnerOnly(string path, string text) =>
        Interop.AppendOnlyFile.Append(path, text, UnixFileMode.UserRead | UnixFileMode.UserWrite);

    private (int Pid, long StartTime) Launch(string binary, string apiSocket, bool upgrade, string role)
    {
        string[] args = ["--id", Id, "--apisock", apiSocket, "--supervisor", _record.SupervisorSocket, .. _record.Args];
        if (!HasFlag(_record.Args, "--work-dir")) args = [.. args, "--work-dir", _record.WorkDir];
        if (upgrade) args = [.. args, "--upgrade"];
        AppendOwnerOnly(_record.LogFile, $"--- {DateTimeOffset.Now:O} nydusd-agent starts {role}: {binary} {string.Join(' ', args)}{Environment.NewLine}");
        var (process, start) = AgentProcesses.Launch(binary, args, _record.LogFile);
        _children[process.Id] = process;
        AppendOwnerOnly(_settings.SpawnLog, $"{process.Id} {start} {role} {Id}{Environment.NewLine}");
        _log.Info("Daemon {Id}: started {Role} pid {Pid} (API {Socket})", Id, role, process.Id, apiSocket);
        return (process.Id, start);
    }

    internal static bool HasFlag(IEnumerable<string> args, string flag) =>
        args.Any(a => a == flag || a.StartsWith(flag + "=", StringComparison.Ordinal));

    private string NextSocket(string kind)
    {
        _record = _record with { SocketGeneration = _record.SocketGeneration + 1 };
        return Path.Combine(_record.DaemonDir, $"{kind}{_record.SocketGeneration}.sock");
    }

    private void WatchPrimary()
    {
        _primaryWatch?.Dispose();
        var (self, pid, start) = (Self, _record.Pid, _record.StartTime);
        _primaryWatch = new ProcessWatcher(pid, start, () => self.Tell(new ManagedProcessExited(pid, start)));
    }

    private void WatchStandby()
    {
        _standbyWatch?.Dispose();
        if (_record.StandbyPid is not { } pid) return;
        var (self, start) = (Self, _record.StandbyStartTime);
        _standbyWatch = new ProcessWatcher(pid, start, () => self.Tell(new ManagedProcessExited(pid, start)));
    }

    private void DisposeChild(int pid)
    {
        if (_children.Remove(pid, out var process)) process.Dispose();
    }

    private async Task<(int Status, string Body)> PutAsync(string socket, string path)
    {
        using var client = new ApiClient(socket, _settings.StepTimeout);
        return await client.SendAsync("PUT", path);
    }

    private static void Check((int Status, string Body) answer, string what)
    {
        if (answer.Status != 204) throw new InvalidOperationException($"{what} answered {answer.Status}: {answer.Body}");
    }

    private async Task TakeOverAsync(string socket, bool failover)
    {
        var served = _supervisor!.ServeNextRestore();
        Check(await PutAsync(socket, failover ? "/api/v1/daemon/fuse/takeover?failover=true" : "/api/v1/daemon/fuse/takeover"), "takeover");
        await served.WaitAsync(_settings.StepTimeout);
    }

    /// <summary>sendfd until the supervisor has the new save; 503 (no FUSE INIT yet) is retried, bounded.</summary>
    private async Task SendFdAsync(string socket)
    {
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            var saved = _supervisor!.NextSave;
            var (status, body) = await PutAsync(socket, "/api/v1/daemon/fuse/sendfd");
            if (status == 204)
            {
                await saved.WaitAsync(_settings.StepTimeout);
                Publish(persist: false);
                return;
            }
            if (status != 503 || deadline.Elapsed > _settings.StepTimeout)
                throw new InvalidOperationException($"sendfd answered {status}: {body}");
            await Task.Delay(20);
        }
    }

    /// <summary>Polls <c>GET /api/v1/daemon</c> until <paramref name="state"/>; fails at once when the process exits.</summary>
    private Task WaitForStateAsync(string socket, string state, int pid, long start) =>
        ApiClient.WaitForStateAsync(socket, state, _settings.StepTimeout,
            () => AgentProcesses.IsAlive(pid, start) ? null : $"pid {pid} exited", TimeSpan.FromMilliseconds(15));

    /// <summary>
    /// What a step of an operation (start, failover, upgrade, stop) can fail with: a process, socket, HTTP, JSON or
    /// supervisor-exchange failure, or a timeout. Such a failure ends the operation with a state and a message; anything
    /// else is a bug and goes to the supervisor.
    /// </summary>
    private static bool IsStepFailure(Exception e) => e is IOException or TimeoutException or InvalidOperationException
        or HttpRequestException or TaskCanceledException or System.Net.Sockets.SocketException
        or System.Text.Json.JsonException or KeyNotFoundException or Nydus.Actors.Upgrade.UpgradeException or AskTimeoutException;

    private string LogTail()
    {
        try
        {
            var lines = File.ReadAllLines(_record.LogFile);
            return string.Join('\n', lines.TakeLast(15));
        }
        catch (IOException)
        {
            return "";
        }
    }

    private void SetState(string state, string? message, bool persist = false)
    {
        _state = state;
        _message = message;
        Publish(persist);
    }

    private void Publish(bool persist) => Context.Parent.Tell(new ManagedStatus(View(), _record, persist));

    /// <summary>Publishes the record and waits (bounded by the step timeout) until the agent's journal holds it.</summary>
    private Task SavedAsync() =>
        Context.Parent.Ask<ManagedStatusSaved>(new ManagedStatus(View(), _record, Persist: true, Acknowledge: true), _settings.StepTimeout);

    /// <summary>The daemon's state as its API reports it (<c>GET /api/v1/daemon</c>).</summary>
    private async Task<string?> DaemonStateAsync(string socket)
    {
        using var client = new ApiClient(socket, _settings.StepTimeout);
        var (status, body) = await client.SendAsync("GET", "/api/v1/daemon");
        if (status != 200) throw new InvalidOperationException($"GET /api/v1/daemon answered {status}: {body}");
        using var document = System.Text.Json.JsonDocument.Parse(body);
        return document.RootElement.GetProperty("state").GetString();
    }

    private ManagedDaemonView View() => new(Id, _record.Pid, _state, _record.ApiSocket, _record.Mountpoint,
        _supervisor is { HasState: true }, _record.Failovers, _record.StandbyPid, _record.StandbySocket, _record.SupervisorSocket,
        _record.Binary, _record.LogFile, _message);

    protected override void PostStop()
    {
        // The agent stops (or forgets this daemon): the daemons keep running; only the agent's own pieces go.
        _primaryWatch?.Dispose();
        _standbyWatch?.Dispose();
        _supervisor?.Dispose();
        foreach (var process in _children.Values) process.Dispose();
        _children.Clear();
    }
}
