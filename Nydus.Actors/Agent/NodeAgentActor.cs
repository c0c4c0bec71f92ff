using System.Text.RegularExpressions;
using Akka.Actor;
using Akka.Event;
using Akka.Persistence;

namespace Nydus.Actors.Agent;

/// <summary>
/// The node agent (<c>nydusd agent</c>): one long-running supervisor per host. Persists the managed daemons
/// (Akka.Persistence, SQLite in the state dir) and has one <see cref="ManagedDaemonActor"/> per daemon, which
/// starts, watches, fails over and upgrades it. Answers the agent API; the list comes from the children's latest
/// status, so a daemon in the middle of a failover never holds the list up. After a restart it recovers the
/// daemons and has each child re-attach to its processes.
/// </summary>
public sealed partial class NodeAgentActor : ReceivePersistentActor
{
    public const int SnapshotInterval = 100;

    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly AgentSettings _settings;
    private readonly Dictionary<string, ManagedDaemonRecord> _records = new(StringComparer.Ordinal);
    private readonly Dictionary<string, ManagedDaemonView> _views = new(StringComparer.Ordinal);
    private readonly Dictionary<string, IActorRef> _children = new(StringComparer.Ordinal);
    // Fleet rollouts (idempotent upgrades, keyed by rollout id and daemon id): applied, begun, and who waits for one
    // in progress. What makes "no daemon upgraded twice" hold whatever the coordinator remembers.
    private readonly Dictionary<(string Rollout, string Daemon), AgentRolloutApplied> _rolloutsApplied = [];
    private readonly Dictionary<(string Rollout, string Daemon), AgentRolloutStarted> _rolloutsStarted = [];
    private readonly Dictionary<(string Rollout, string Daemon), List<IActorRef>> _rolloutWaiters = [];
    // The fleet's rollout as last seen replicated (JSON): what a coordinator reads back after the whole fleet restarted.
    private string? _fleetRollout;

    public override string PersistenceId => _settings.PersistenceId;

    public NodeAgentActor(AgentSettings settings)
    {
        _settings = settings;
        Recover<SnapshotOffer>(offer =>
        {
            if (offer.Snapshot is not AgentSnapshot snapshot) return;
            _records.Clear();
            foreach (var r in snapshot.Daemons) _records[r.Id] = r;
            _rolloutsApplied.Clear();
            _rolloutsStarted.Clear();
            foreach (var a in snapshot.RolloutsApplied ?? []) _rolloutsApplied[(a.RolloutId, a.DaemonId)] = a;
            foreach (var b in snapshot.RolloutsStarted ?? []) _rolloutsStarted[(b.RolloutId, b.DaemonId)] = b;
            _fleetRollout = snapshot.FleetRollout;
        });
        Recover<AgentFleetRolloutRecorded>(e => _fleetRollout = e.RolloutJson);
        Recover<AgentRolloutStarted>(e => _rolloutsStarted[(e.RolloutId, e.DaemonId)] = e);
        Recover<AgentRolloutApplied>(RecordApplied);
        Recover<AgentDaemonSaved>(e => _records[e.Record.Id] = e.Record);
        Recover<AgentDaemonRemoved>(e => _records.Remove(e.Id));
        Recover<RecoveryCompleted>(_ =>
        {
            _log.Info("Node agent recovered {Count} managed daemons from {StateDir}", _records.Count, _settings.StateDir);
            foreach (var record in _records.Values)
            {
                var child = Spawn(record);
                child.Tell(AttachManaged.Instance);
            }
        });

        Command<AddManagedDaemon>(Add);
        Command<ListManagedDaemons>(_ => Sender.Tell(new AgentReply(200, _views.Values.OrderBy(v => v.Id, StringComparer.Ordinal).ToArray())));
        Command<GetManagedDaemon>(g =>
            Sender.Tell(_views.TryGetValue(g.Id, out var view) ? new AgentReply(200, view) : NotFound(g.Id)));
        Command<UpgradeManagedDaemon>(u => ForwardTo(u.Id, u));
        Command<RemoveManagedDaemon>(r => ForwardTo(r.Id, r));
        Command<Fleet.ApplyRolloutUpgrade>(ApplyRollout);
        Command<RolloutUpgradeEnded>(OnRolloutUpgradeEnded);
        Command<Fleet.RecordFleetRollout>(r =>
        {
            var replyTo = Sender;
            Persist(new AgentFleetRolloutRecorded(r.RolloutJson), e =>
            {
                _fleetRollout = e.RolloutJson;
                replyTo.Tell(new AgentReply(200, null));
                MaybeSnapshot();
            });
        });
        Command<Fleet.GetRecordedFleetRollout>(_ => Sender.Tell(new AgentReply(200, _fleetRollout)));
        Command<ManagedStatus>(s =>
        {
            if (!_children.ContainsKey(s.Record.Id)) return;
            _views[s.Record.Id] = s.View;
            if (s.Persist) Save(s.Record, s.Acknowledge ? Sender : null);
            else _records[s.Record.Id] = s.Record;
        });
        Command<ManagedGone>(g =>
        {
            _children.Remove(g.Id);
            _views.Remove(g.Id);
            if (_records.Remove(g.Id)) Persist(new AgentDaemonRemoved(g.Id), _ => MaybeSnapshot());
        });
        Command<SaveSnapshotSuccess>(s => DeleteMessages(s.Metadata.SequenceNr));
        Command<SaveSnapshotFailure>(f => _log.Warning(f.Cause, "Saving an agent snapshot failed"));
        Command<DeleteMessagesSuccess>(_ => { });
        Command<DeleteMessagesFailure>(f => _log.Warning(f.Cause, "Deleting old agent events failed"));
    }

    public static Props Props(AgentSettings settings) => Akka.Actor.Props.Create(() => new NodeAgentActor(settings));

    /// <summary>A record that cannot be read back (damaged, or written by something else): one line, not Akka's stack
    /// trace, and the host is told; the actor then stops (Akka.Persistence's rule), so nothing is managed from a list
    /// that was only partly read.</summary>
    protected override void OnRecoveryFailure(Exception reason, object? message = null)
    {
        var at = message is null ? "" : $" at {message.GetType().Name}";
        var description = $"the agent's journal cannot be replayed{at} (last good event {LastSequenceNr}): {Daemon.Persistence.JournalFailures.Describe(reason)}";
        _log.Error("{0}", description);
        _settings.RecoveryFailed?.Invoke(description);
    }

    // Children are never restarted: a restart would lose the fd they hold. One that throws (a bug: step failures are
    // caught and reported by the child) is logged and resumed.
    protected override SupervisorStrategy SupervisorStrategy() => new OneForOneStrategy(e =>
    {
        _log.Error(e, "A managed daemon actor failed");
        return Directive.Resume;
    });

    [GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    private static partial Regex IdPattern();

    private static readonly string[] ForbiddenFlags = ["--apisock", "-A", "--supervisor", "--id", "--upgrade"];

    private void Add(AddManagedDaemon add)
    {
        if (Validate(add) is { } error)
        {
            Sender.Tell(AgentReply.Fail(Api.ApiErrorKind.BadRequest, error));
            return;
        }
        if (_records.ContainsKey(add.Id))
        {
            Sender.Tell(AgentReply.Fail(Api.ApiErrorKind.AlreadyExists, $"a daemon with id {add.Id} is already managed"));
            return;
        }
        var mountpoint = Path.GetFullPath(MountpointOf(add.Args)!);
        if (_records.Values.FirstOrDefault(r => r.Mountpoint == mountpoint) is { } other)
        {
            Sender.Tell(AgentReply.Fail(Api.ApiErrorKind.AlreadyExists, $"{mountpoint} is already served by managed daemon {other.Id}"));
            return;
        }

        var dir = Path.Combine(_settings.StateDir, "d", add.Id);
        var record = new ManagedDaemonRecord(add.Id, add.Args, _settings.DefaultBinary, mountpoint, dir, Path.Combine(dir, "work"),
            Path.Combine(dir, "daemon.log"), Path.Combine(dir, "sup.sock"), Path.Combine(dir, "api0.sock"),
            Pid: 0, StartTime: 0, StandbyPid: null, StandbyStartTime: 0, StandbySocket: null, Failovers: 0, SocketGeneration: 0);
        var replyTo = Sender;
        Save(record);
        var child = Spawn(record);
        child.Tell(StartManaged.Instance, replyTo);
    }

    private static string? Validate(AddManagedDaemon add)
    {
        if (string.IsNullOrEmpty(add.Id) || !IdPattern().IsMatch(add.Id))
            return $"invalid id '{add.Id}': use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit";
        if (add.Args is null || add.Args.Any(a => a is null)) return "\"args\" must be an array of strings";
        foreach (var flag in ForbiddenFlags)
            if (ManagedDaemonActor.HasFlag(add.Args, flag))
                return $"{flag} is set by the agent: leave it out of \"args\"";
        if (add.Args.FirstOrDefault() is "singleton" or "agent" or "ctl")
            return $"the agent manages FUSE daemons only, not `{add.Args[0]}`";
        if (MountpointOf(add.Args) is null) return "\"args\" must give --mountpoint (or -M): the agent watches that mount";
        return null;
    }

    private static string? MountpointOf(string[] args)
    {
        for (int i = 0; i < args.Length; i++)
        {
            if ((args[i] == "--mountpoint" || args[i] == "-M") && i + 1 < args.Length) return args[i + 1];
            if (args[i].StartsWith("--mountpoint=", StringComparison.Ordinal)) return args[i]["--mountpoint=".Length..];
        }
        return null;
    }

    private IActorRef Spawn(ManagedDaemonRecord record)
    {
        var child = Context.ActorOf(ManagedDaemonActor.Props(_settings, record), "daemon-" + record.Id);
        _children[record.Id] = child;
        _views[record.Id] = new ManagedDaemonView(record.Id, record.Pid, ManagedStates.Starting, record.ApiSocket, record.Mountpoint,
            false, record.Failovers, record.StandbyPid, record.StandbySocket, record.SupervisorSocket, record.Binary, record.LogFile, null);
        return child;
    }

    private void ForwardTo(string id, object message)
    {
        if (_children.TryGetValue(id, out var child)) child.Forward(message);
        else Sender.Tell(NotFound(id));
    }

    private static AgentReply NotFound(string id) => AgentReply.Fail(Api.ApiErrorKind.NotFound, $"no managed daemon with id {id}");

    /// <param name="savedTo">Told <see cref="ManagedStatusSaved"/> once the record is written (a daemon actor that must
    /// not go on before its journal holds it).</param>
    private void Save(ManagedDaemonRecord record, IActorRef? savedTo = null)
    {
        _records[record.Id] = record;
        Persist(new AgentDaemonSaved(record), _ =>
        {
            savedTo?.Tell(ManagedStatusSaved.Instance);
            MaybeSnapshot();
        });
    }

    private void MaybeSnapshot()
    {
        if (LastSequenceNr % SnapshotInterval == 0)
            SaveSnapshot(new AgentSnapshot([.. _records.Values], [.. _rolloutsApplied.Values], [.. _rolloutsStarted.Values], _fleetRollout));
    }

    // ---------------------------------------------------------------- fleet rollouts

    /// <summary>An upgrade is a handful of bounded steps (start, INIT, takeover, READY, exit, start, RUNNING, sendfd).</summary>
    private TimeSpan RolloutUpgradeTimeout => _settings.StepTimeout * 8;

    /// <summary>
    /// A rollout's upgrade of one daemon, done at most once per (rollout, daemon): answered from the journal's record
    /// when already applied, joined when in progress. An agent killed in the middle finds its "started" record on
    /// restart: when the daemon's process changed since (same failover count, the rollout's binary), the upgrade got
    /// through and is recorded applied instead of being done again.
    /// </summary>
    private void ApplyRollout(Fleet.ApplyRolloutUpgrade apply)
    {
        var key = (apply.RolloutId, apply.Daemon);
        if (_rolloutsApplied.TryGetValue(key, out var applied))
        {
            Sender.Tell(new AgentReply(200, Application(applied, repeated: true)));
            return;
        }
        if (_rolloutWaiters.TryGetValue(key, out var waiters))
        {
            waiters.Add(Sender);
            return;
        }
        if (!_children.TryGetValue(apply.Daemon, out var child) || !_records.TryGetValue(apply.Daemon, out var record))
        {
            Sender.Tell(NotFound(apply.Daemon));
            return;
        }
        var replyTo = Sender;
        if (_rolloutsStarted.TryGetValue(key, out var started) && (record.Pid != started.OldPid || record.StartTime != started.OldStartTime)
            && record.Failovers == started.OldFailovers && record.Binary == started.Binary)
        {
            _log.Info("Rollout {Rollout}: daemon {Id} was upgraded (pid {Old} -> {New}) before this agent restarted; recorded, not upgraded again",
                apply.RolloutId, apply.Daemon, started.OldPid, record.Pid);
            Persist(new AgentRolloutApplied(apply.RolloutId, apply.Daemon, started.OldPid, record.Pid), e =>
            {
                RecordApplied(e);
                replyTo.Tell(new AgentReply(200, Application(e, repeated: true)));
                MaybeSnapshot();
            });
            return;
        }
        _rolloutWaiters[key] = [replyTo];
        Persist(new AgentRolloutStarted(apply.RolloutId, apply.Daemon, apply.Binary, record.Pid, record.StartTime, record.Failovers), begun =>
        {
            _rolloutsStarted[key] = begun;
            MaybeSnapshot();
            _log.Info("Rollout {Rollout}: upgrading daemon {Id} (pid {Pid}) to {Binary}", apply.RolloutId, apply.Daemon, record.Pid, apply.Binary);
            child.Ask<AgentReply>(new UpgradeManagedDaemon(apply.Daemon, apply.Binary), RolloutUpgradeTimeout)
                .PipeTo(Self, success: reply => new RolloutUpgradeEnded(apply, begun, reply),
                    failure: e => new RolloutUpgradeEnded(apply, begun,
                        AgentReply.Fail(Api.ApiErrorKind.Timeout, $"upgrade of daemon {apply.Daemon} did not end within {RolloutUpgradeTimeout}: {e.Message}")));
        });
    }

    private void OnRolloutUpgradeEnded(RolloutUpgradeEnded ended)
    {
        var key = (ended.Request.RolloutId, ended.Request.Daemon);
        var waiters = _rolloutWaiters.Remove(key, out var w) ? w : [];
        if (ended.Reply.Error is not null || ended.Reply.Body is not ManagedDaemonView view)
        {
            // Not recorded applied: a resumed rollout tries it again (the "started" record tells it whether it is needed).
            foreach (var waiter in waiters) waiter.Tell(ended.Reply);
            return;
        }
        Persist(new AgentRolloutApplied(ended.Request.RolloutId, ended.Request.Daemon, ended.Started.OldPid, view.Pid), e =>
        {
            RecordApplied(e);
            foreach (var waiter in waiters) waiter.Tell(new AgentReply(200, Application(e, repeated: false)));
            MaybeSnapshot();
        });
    }

    private void RecordApplied(AgentRolloutApplied applied)
    {
        _rolloutsApplied[(applied.RolloutId, applied.DaemonId)] = applied;
        _rolloutsStarted.Remove((applied.RolloutId, applied.DaemonId));
    }

    private Fleet.RolloutApplication Application(AgentRolloutApplied applied, bool repeated) =>
        new(applied.RolloutId, applied.DaemonId, applied.OldPid, applied.NewPid, repeated,
            _views.TryGetValue(applied.DaemonId, out var view) ? view.ApiSocket : "");
}
