using Akka.Actor;
using Akka.Cluster;
using Akka.DistributedData;
using Akka.Event;

namespace Nydus.Actors.Agent.Fleet;

/// <summary>
/// The fleet's rolling-upgrade coordinator: one per cluster (a ClusterSingletonManager runs it on the oldest agent,
/// reached through ClusterSingletonProxy from any agent's API). It upgrades every daemon of every up agent through
/// that agent's rollout worker, a batch at a time, with gates between batches, and pauses at the first failure
/// when asked to.
/// <para>
/// Progress lives in Distributed Data (<see cref="RolloutKey"/>), written with majority writes before each batch is
/// sent and after each result, and read with a majority read when a coordinator starts: a coordinator that moves to
/// another node (its node died) finds the rollout where the majority saw it. A daemon that was in progress then is
/// sent again; the agent answers from its own journal if it had applied it (no daemon is upgraded twice, whatever
/// the coordinator remembers). A coordinator that cannot reach a majority (the minority side of a partition) sends
/// no batch: its writes fail and it retries.
/// </para>
/// States: loading (the majority read) → active. Commands during loading are answered NotReady.
/// </summary>
public sealed class RolloutCoordinatorActor : ReceiveActor, IWithTimers
{
    /// <summary>The replicated rollout: one entry, <see cref="Entry"/>, the <see cref="RolloutStatus"/> as JSON.</summary>
    public static readonly LWWDictionaryKey<string, string> RolloutKey = new("nydus-fleet-rollout");
    internal const string Entry = "current";

    /// <summary>What an agent that takes rollout requests advertises in its fleet entry.</summary>
    public const string Capability = "rollout/1";

    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly RolloutSettings _settings;
    private readonly Cluster _cluster = Cluster.Get(Context.System);
    private readonly IActorRef _replicator = DistributedData.Get(Context.System).Replicator;
    private readonly HashSet<(string Node, string Daemon)> _inFlight = [];
    private LWWDictionary<string, string> _fleet = LWWDictionary<string, string>.Empty;
    private RolloutStatus? _rollout;
    private DateTimeOffset? _gateWaitingSince;
    private string? _gateReason;

    public ITimerScheduler Timers { get; set; } = null!;

    private sealed record Load
    {
        public static readonly Load Instance = new();
    }

    private sealed record Advance
    {
        public static readonly Advance Instance = new();
    }

    /// <summary>The context of a majority write: the targets to send once it succeeded (none: a progress write).</summary>
    private sealed record WriteContext((string Node, string Daemon)[] Send);

    public RolloutCoordinatorActor(RolloutSettings settings)
    {
        _settings = settings;
        Loading();
    }

    public static Props Props(RolloutSettings settings) => Akka.Actor.Props.Create(() => new RolloutCoordinatorActor(settings));

    private string Self_ => _cluster.SelfAddress.ToString();

    protected override void PostStop() => _cluster.Unsubscribe(Self);

    protected override void PreStart()
    {
        _replicator.Tell(Dsl.Subscribe(FleetPublisherActor.StateKey, Self));
        _cluster.Subscribe(Self, ClusterEvent.SubscriptionInitialStateMode.InitialStateAsSnapshot, typeof(ClusterEvent.MemberUp));
        Self.Tell(Load.Instance);
    }

    // ---------------------------------------------------------------- loading

    private void Loading()
    {
        Receive<Load>(_ => _replicator.Tell(Dsl.Get(RolloutKey, new ReadMajority(_settings.WriteTimeout))));
        Receive<GetSuccess>(g => g.Key.Equals(RolloutKey), g =>
            GatherRecorded(g.Get(RolloutKey).TryGetValue(Entry, out var json) ? RolloutJson.Parse(json) : null));
        Receive<NotFound>(n => n.Key.Equals(RolloutKey), _ => GatherRecorded(null));
        Receive<GetFailure>(_ =>
        {
            _log.Warning("Rollout coordinator on {0}: the rollout state could not be read from a majority yet; trying again", Self_);
            Timers.StartSingleTimer("load", Load.Instance, TimeSpan.FromSeconds(2));
        });
        Receive<RecordedCopies>(copies =>
        {
            var newest = Newest(copies.Rollouts);
            if (newest is not null && newest != copies.Rollouts[0])
                _log.Info("Rollout coordinator on {0}: rollout {1} ({2}) found in an agent's journal, newer than the replicated copy", Self_, newest.Id, newest.State);
            Loaded(newest);
        });
        Receive<Changed>(OnFleetChanged);
        Receive<StartRollout>(_ => NotReadyYet());
        Receive<GetRollout>(_ => NotReadyYet());
        Receive<ControlRollout>(_ => NotReadyYet());
        Receive<RolloutStepResult>(_ => { });
        Receive<ClusterEvent.MemberUp>(_ => { });
        Receive<ClusterEvent.CurrentClusterState>(_ => { });
    }

    /// <summary>The copies the up agents recorded in their journals, with <paramref name="replicated"/> first: after
    /// the whole fleet restarted, the replicated copy is gone and the journals are where the rollout is.</summary>
    private void GatherRecorded(RolloutStatus? replicated)
    {
        var asks = _cluster.State.Members.Where(m => m.Status == MemberStatus.Up && m.HasRole(FleetSettings.RolloutRole))
            .Select(m => AskRecordedAsync(m.Address)).ToArray();
        Task.WhenAll(asks).PipeTo(Self, success: copies => new RecordedCopies([replicated, .. copies]),
            failure: _ => new RecordedCopies([replicated]));
    }

    private async Task<RolloutStatus?> AskRecordedAsync(Address node)
    {
        try
        {
            var observer = Context.ActorSelection(new RootActorPath(node) / "user" / RolloutObserverActor.Name);
            var copy = await observer.Ask<RecordedRollout>(GetRecordedRollout.Instance, _settings.WriteTimeout);
            return copy.RolloutJson is { } json ? RolloutJson.Parse(json) : null;
        }
        catch (Exception e) when (e is AskTimeoutException or TimeoutException or TaskCanceledException)
        {
            return null; // An agent that does not answer in time is not waited for: the others' copies and the replicated one count.
        }
    }

    /// <summary>The latest of the copies (by when its coordinator last wrote it).</summary>
    private static RolloutStatus? Newest(IEnumerable<RolloutStatus?> copies) =>
        copies.OfType<RolloutStatus>().OrderByDescending(r => r.UpdatedAtMs).FirstOrDefault();

    private sealed record RecordedCopies(RolloutStatus?[] Rollouts);

    private sealed record RecordedCopy(RolloutStatus? Rollout, string Node);

    private void NotReadyYet() => Sender.Tell(RolloutReply.Fail(Api.ApiErrorKind.NotReady,
        "the rollout coordinator is reading the rollout's progress from a majority of the fleet; try again shortly"));

    private void Loaded(RolloutStatus? rollout)
    {
        if (rollout is { } r && RolloutStates.IsActive(r.State)) TakeOver(r);
        else
        {
            _rollout = rollout;
            _log.Info("Rollout coordinator on {0}: ready (no rollout in progress)", Self_);
        }
        Become(Active);
        Timers.StartPeriodicTimer("advance", Advance.Instance, TimeSpan.FromSeconds(1));
    }

    /// <summary>Takes over an active rollout another coordinator wrote (or one read back from the agents' journals).</summary>
    private void TakeOver(RolloutStatus r)
    {
        // Daemons in progress under the previous coordinator are sent again: their agents answer from their records.
        var resumed = r with
        {
            Coordinator = Self_,
            Targets = [.. r.Targets.Select(t => t.State == RolloutTargetStates.Upgrading ? t with { State = RolloutTargetStates.Pending } : t)],
        };
        _log.Info("Rollout coordinator on {0}: took over rollout {1} ({2}): {3} of {4} daemons done", Self_, r.Id, r.State,
            r.Count(RolloutTargetStates.Done), r.Targets.Length);
        _inFlight.Clear();
        _gateWaitingSince = null;
        Save(resumed);
    }

    // ---------------------------------------------------------------- active

    private void Active()
    {
        Receive<Changed>(OnFleetChanged);
        Receive<ClusterEvent.CurrentClusterState>(_ => { });
        // An agent that comes up may hold a newer rollout in its journal than this coordinator (the fleet restarted and
        // this node came up first): it is read and taken over when nothing else is in progress.
        Receive<ClusterEvent.MemberUp>(up =>
        {
            if (up.Member.Address == _cluster.SelfAddress || !up.Member.HasRole(FleetSettings.RolloutRole)) return;
            var node = up.Member.Address;
            AskRecordedAsync(node).PipeTo(Self, success: r => new RecordedCopy(r, node.ToString()));
        });
        Receive<RecordedCopy>(copy =>
        {
            if (copy.Rollout is not { } found || (_rollout is { } current && (found.UpdatedAtMs <= current.UpdatedAtMs
                    || (RolloutStates.IsActive(current.State) && current.Id != found.Id))))
                return;
            _log.Info("Rollout coordinator on {0}: agent {1} recorded rollout {2} ({3}), newer than this coordinator's", Self_, copy.Node, found.Id, found.State);
            if (RolloutStates.IsActive(found.State)) TakeOver(found);
            else _rollout = found;
        });
        Receive<GetRollout>(_ => Sender.Tell(_rollout is { } r
            ? new RolloutReply(200, r)
            : RolloutReply.Fail(Api.ApiErrorKind.NotFound, "no rollout has been started in this fleet")));
        Receive<StartRollout>(Start);
        Receive<ControlRollout>(Control);
        Receive<Advance>(_ => TryNextBatch());
        Receive<RolloutStepResult>(OnResult);
        Receive<UpdateSuccess>(u =>
        {
            if (u.Request is WriteContext { Send.Length: > 0 } w) SendBatch(w.Send);
        });
        Receive<IUpdateFailure>(f =>
        {
            // No majority (a partition, or the others not up yet): nothing is sent on an unconfirmed write. The
            // targets it marked stay "upgrading" locally and are sent once a write goes through.
            _log.Warning("Rollout coordinator on {0}: writing the rollout's progress to a majority failed ({1}); retrying", Self_, f.GetType().Name);
            var send = (f as UpdateTimeout)?.Request as WriteContext;
            Timers.StartSingleTimer("rewrite", new RetryWrite(send?.Send ?? []), TimeSpan.FromSeconds(1));
        });
        Receive<RetryWrite>(r =>
        {
            if (_rollout is { } current) Write(current, r.Send.Where(t => _rollout.Targets.Any(x => (x.Node, x.Daemon) == t && x.State == RolloutTargetStates.Upgrading)).ToArray());
        });
    }

    private sealed record RetryWrite((string Node, string Daemon)[] Send);

    private void OnFleetChanged(Changed changed)
    {
        if (changed.Key.Equals(FleetPublisherActor.StateKey)) _fleet = changed.Get(FleetPublisherActor.StateKey);
    }

    private void Start(StartRollout start)
    {
        if (_rollout is { } current && RolloutStates.IsActive(current.State))
        {
            Sender.Tell(RolloutReply.Fail(Api.ApiErrorKind.AlreadyExists,
                $"rollout {current.Id} to {current.Binary} is {current.State} ({current.Count(RolloutTargetStates.Done)} of {current.Targets.Length} daemons done): "
                + "abort it (or let it finish) before starting another"));
            return;
        }
        if (string.IsNullOrEmpty(start.Binary) || !Path.IsPathRooted(start.Binary))
        {
            Sender.Tell(RolloutReply.Fail(Api.ApiErrorKind.BadRequest, $"\"binary\" must be an absolute path on every host, not '{start.Binary}'"));
            return;
        }
        if (start.Batch < 1 || start.MaxUnavailable < 0)
        {
            Sender.Tell(RolloutReply.Fail(Api.ApiErrorKind.BadRequest, $"batch must be at least 1 (got {start.Batch}) and max-unavailable not negative (got {start.MaxUnavailable})"));
            return;
        }
        var maxUnavailable = start.MaxUnavailable == 0 ? start.Batch : start.MaxUnavailable;
        if (maxUnavailable < start.Batch)
        {
            Sender.Tell(RolloutReply.Fail(Api.ApiErrorKind.BadRequest, $"max-unavailable ({maxUnavailable}) is below the batch ({start.Batch}): no batch could ever start"));
            return;
        }

        var reports = Reports();
        var members = _cluster.State.Members.Where(m => m.Status == MemberStatus.Up).Select(m => m.Address.ToString())
            // This coordinator's own host goes last: the rollout is well advanced before it touches the node it runs on.
            .OrderBy(a => a == Self_ ? 1 : 0).ThenBy(a => a, StringComparer.Ordinal).ToList();
        var targets = new List<RolloutTarget>();
        foreach (var node in members)
        {
            if (!reports.TryGetValue(node, out var report)) continue;
            var older = !Supports(report);
            foreach (var daemon in report.Daemons.OrderBy(d => d.Id, StringComparer.Ordinal))
            {
                targets.Add(older && start.SkipOlderAgents
                    ? new RolloutTarget(node, daemon.Id, RolloutTargetStates.Skipped, daemon.Pid, 0, 0, OlderAgent(report))
                    : new RolloutTarget(node, daemon.Id, RolloutTargetStates.Pending, daemon.Pid, 0, 0, null));
            }
        }
        if (targets.Count == 0)
        {
            Sender.Tell(RolloutReply.Fail(Api.ApiErrorKind.BadRequest, "the fleet lists no daemons on its up agents: nothing to upgrade"));
            return;
        }
        var now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        var id = $"r-{DateTimeOffset.UtcNow:yyyyMMdd-HHmmss}-{Guid.NewGuid().ToString("N")[..4]}";
        var rollout = new RolloutStatus(id, start.Binary, start.Batch, maxUnavailable, start.PauseOnFailure, RolloutStates.Running, null,
            Self_, now, now, 0, [.. targets]);
        _log.Info("Rollout {Rollout} started: {Daemons} daemons to {Binary} ({Options})", id, targets.Count, start.Binary,
            $"{targets.Select(t => t.Node).Distinct().Count()} agents, batch {start.Batch}, max unavailable {maxUnavailable}, pause on failure {start.PauseOnFailure}");
        _inFlight.Clear();
        _gateWaitingSince = null;
        Save(rollout);
        Sender.Tell(new RolloutReply(201, rollout));
        Self.Tell(Advance.Instance);
    }

    private void Control(ControlRollout control)
    {
        if (_rollout is not { } r)
        {
            Sender.Tell(RolloutReply.Fail(Api.ApiErrorKind.NotFound, "no rollout has been started in this fleet"));
            return;
        }
        RolloutStatus? next = (control.Action, r.State) switch
        {
            (ControlRollout.Pause, RolloutStates.Running) => r with
            {
                State = RolloutStates.Paused,
                Message = _inFlight.Count > 0 ? $"paused by request; {_inFlight.Count} daemon(s) in progress finish" : "paused by request",
            },
            (ControlRollout.Resume, RolloutStates.Paused) => r with
            {
                State = RolloutStates.Running,
                Message = null,
                // Failed daemons are tried again (each agent still refuses what it cannot do, and keeps the old daemon).
                Targets = [.. r.Targets.Select(t => t.State == RolloutTargetStates.Failed ? t with { State = RolloutTargetStates.Pending } : t)],
            },
            (ControlRollout.Abort, RolloutStates.Running or RolloutStates.Paused) => r with
            {
                State = RolloutStates.Aborted,
                Message = $"aborted by request with {r.Count(RolloutTargetStates.Done)} of {r.Targets.Length} daemons upgraded"
                          + (_inFlight.Count > 0 ? $"; {_inFlight.Count} in progress finish" : ""),
            },
            _ => null,
        };
        if (next is null)
        {
            Sender.Tell(control.Action is ControlRollout.Pause or ControlRollout.Resume or ControlRollout.Abort
                ? RolloutReply.Fail(Api.ApiErrorKind.WrongState, $"rollout {r.Id} is {r.State}: it cannot be {control.Action}d")
                : RolloutReply.Fail(Api.ApiErrorKind.BadRequest, $"unknown rollout action '{control.Action}' (pause, resume, abort)"));
            return;
        }
        _log.Info("Rollout {0}: {1} ({2})", r.Id, control.Action, $"{r.State} -> {next.State}");
        _gateWaitingSince = null;
        Save(next);
        Sender.Tell(new RolloutReply(200, next));
        if (next.State == RolloutStates.Running) Self.Tell(Advance.Instance);
    }

    /// <summary>The next batch, when the previous one is done and the gates hold: every node of the batch up and
    /// reachable and taking rollout requests, and the fleet's unhealthy daemons plus the batch within max-unavailable.
    /// A gate that does not hold within the gate timeout pauses the rollout with the reason.</summary>
    private void TryNextBatch()
    {
        if (_rollout is not { State: RolloutStates.Running } r || _inFlight.Count > 0) return;
        if (r.Targets.Any(t => t.State == RolloutTargetStates.Upgrading)) return; // marked, its write not confirmed yet
        var pending = r.Targets.Where(t => t.State == RolloutTargetStates.Pending).ToList();
        if (pending.Count == 0)
        {
            var failed = r.Count(RolloutTargetStates.Failed);
            var done = r with
            {
                State = failed > 0 ? RolloutStates.CompletedWithFailures : RolloutStates.Completed,
                Message = $"{r.Count(RolloutTargetStates.Done)} upgraded, {failed} failed, {r.Count(RolloutTargetStates.Skipped)} skipped",
            };
            _log.Info("Rollout {0} {1}: {2}", r.Id, done.State, done.Message);
            Save(done);
            return;
        }
        var batch = pending.Take(r.Batch).ToList();
        var reports = Reports();
        if (batch.Select(t => t.Node).Distinct().FirstOrDefault(n => reports.TryGetValue(n, out var rep) && !Supports(rep)) is { } olderNode)
        {
            Save(r with { State = RolloutStates.Paused, Message = $"{OlderAgent(reports[olderNode])}: the rollout is paused before it (upgrade that agent, "
                                                                    + "then resume; or abort and start again with skip-older-agents)" });
            return;
        }
        if (Gate(batch, reports, r.MaxUnavailable) is { } waiting)
        {
            var now = DateTimeOffset.UtcNow;
            _gateWaitingSince ??= now;
            if (now - _gateWaitingSince.Value > _settings.GateTimeout)
            {
                _gateWaitingSince = null;
                _gateReason = null;
                Save(r with { State = RolloutStates.Paused, Message = $"gate did not open within {_settings.GateTimeout}: {waiting}; resume to wait again" });
            }
            else if (_gateReason != waiting)
            {
                // Shown in the status (one write per new reason), so an operator sees what the rollout waits for.
                _log.Info("Rollout {0}: next batch waits: {1}", r.Id, waiting);
                _gateReason = waiting;
                Save(r with { Message = $"next batch waits: {waiting}" });
            }
            return;
        }
        _gateWaitingSince = null;
        _gateReason = null;
        var keys = batch.Select(t => (t.Node, t.Daemon)).ToHashSet();
        var marked = r with
        {
            Message = null,
            Targets = [.. r.Targets.Select(t => keys.Contains((t.Node, t.Daemon)) ? t with { State = RolloutTargetStates.Upgrading, Attempts = t.Attempts + 1, Message = null } : t)],
        };
        Write(marked, [.. keys]);
    }

    private string? Gate(List<RolloutTarget> batch, Dictionary<string, FleetNodeReport> reports, int maxUnavailable)
    {
        var state = _cluster.State;
        foreach (var node in batch.Select(t => t.Node).Distinct())
        {
            var member = state.Members.FirstOrDefault(m => m.Address.ToString() == node);
            if (member is null || member.Status != MemberStatus.Up) return $"agent {node} is not an up member of the fleet ({member?.Status.ToString().ToLowerInvariant() ?? "absent"})";
            if (state.Unreachable.Contains(member)) return $"agent {node} is unreachable";
        }
        var up = state.Members.Where(m => m.Status == MemberStatus.Up).Select(m => m.Address.ToString()).ToHashSet();
        var unhealthy = reports.Values.Where(r => up.Contains(r.Address)).SelectMany(r => r.Daemons.Where(d => !d.Healthy).Select(d => $"{d.Id}@{r.Address} ({d.State})")).ToList();
        if (unhealthy.Count + batch.Count > maxUnavailable)
            return $"{unhealthy.Count} unhealthy daemon(s) in the fleet ({string.Join(", ", unhealthy.Take(5))}) plus a batch of {batch.Count} exceed max-unavailable {maxUnavailable}";
        return null;
    }

    private void SendBatch((string Node, string Daemon)[] targets)
    {
        if (_rollout is not { } r) return;
        foreach (var (node, daemon) in targets)
        {
            if (!_inFlight.Add((node, daemon))) continue;
            _log.Info("Rollout {0}: upgrading daemon {1} on {2}", r.Id, daemon, node);
            var worker = Context.ActorSelection(new RootActorPath(Address.Parse(node)) / "user" / RolloutWorkerActor.Name);
            var request = new UpgradeForRollout(r.Id, daemon, r.Binary, (long)_settings.Settle.TotalMilliseconds);
            worker.Ask<RolloutStepResult>(request, _settings.StepTimeout).PipeTo(Self,
                failure: e => new RolloutStepResult(r.Id, daemon, false, false, 0, 0,
                    $"no answer from the agent at {node} within {_settings.StepTimeout} ({e.GetType().Name}); the agent may still finish it"));
        }
    }

    private void OnResult(RolloutStepResult result)
    {
        if (_rollout is not { } r || result.RolloutId != r.Id) return;
        var target = r.Targets.FirstOrDefault(t => t.Daemon == result.Daemon && _inFlight.Contains((t.Node, t.Daemon)));
        if (target is null) return;
        _inFlight.Remove((target.Node, target.Daemon));
        var updated = result.Ok
            ? target with { State = RolloutTargetStates.Done, OldPid = result.OldPid != 0 ? result.OldPid : target.OldPid, NewPid = result.NewPid,
                Message = result.Repeated ? "already applied by its agent (answered from the agent's record)" : null }
            : target with { State = RolloutTargetStates.Failed, Message = result.Error };
        if (result.Ok)
            _log.Info("Rollout {0}: daemon {1} on {2} upgraded: pid {3} -> {4}{5}", r.Id, result.Daemon, target.Node, result.OldPid, result.NewPid,
                result.Repeated ? " (repeated request, answered from the agent's record)" : "");
        else
            _log.Warning("Rollout {0}: daemon {1} on {2} failed: {3}", r.Id, result.Daemon, target.Node, result.Error);
        var next = r with { Targets = [.. r.Targets.Select(t => t == target ? updated : t)] };
        if (!result.Ok && r.PauseOnFailure && r.State == RolloutStates.Running)
            next = next with { State = RolloutStates.Paused, Message = $"daemon {result.Daemon} on {target.Node} failed: {result.Error}; "
                                                                      + "paused (its agent keeps the old daemon serving; resume tries it again, abort ends the rollout)" };
        if (_inFlight.Count == 0) next = next with { BatchesDone = next.BatchesDone + 1 };
        Save(next);
        if (_inFlight.Count == 0) Self.Tell(Advance.Instance);
    }

    private void Save(RolloutStatus rollout) => Write(rollout, []);

    private void Write(RolloutStatus rollout, (string Node, string Daemon)[] send)
    {
        _rollout = rollout with { UpdatedAtMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(), Coordinator = Self_ };
        var json = RolloutJson.Format(_rollout);
        var node = _cluster.SelfUniqueAddress;
        _replicator.Tell(Dsl.Update(RolloutKey, LWWDictionary<string, string>.Empty, new WriteMajority(_settings.WriteTimeout),
            new WriteContext(send), d => d.SetItem(node, Entry, json)));
    }

    private Dictionary<string, FleetNodeReport> Reports() => _fleet.Entries
        .Select(e => FleetNodeReport.FromJson(e.Value))
        .OfType<FleetNodeReport>()
        .ToDictionary(r => r.Address, StringComparer.Ordinal);

    private static bool Supports(FleetNodeReport report) => report.Capabilities?.Contains(Capability) == true;

    private static string OlderAgent(FleetNodeReport report) =>
        $"the agent at {report.Address} (version {(report.AgentVersion is { Length: > 0 } v ? v : "unknown")}) does not take rollout requests";
}

/// <summary>The timings of rollouts (<c>nydus.agent.cluster.rollout</c>).</summary>
/// <param name="StepTimeout">How long the coordinator waits for one daemon's upgrade and gate.</param>
/// <param name="Settle">How long a new daemon's error counters must stay flat (the health gate).</param>
/// <param name="GateTimeout">How long the next batch may wait for its gate before the rollout pauses.</param>
/// <param name="WriteTimeout">Bound of a majority write or read of the rollout's progress.</param>
public sealed record RolloutSettings(TimeSpan StepTimeout, TimeSpan Settle, TimeSpan GateTimeout, TimeSpan WriteTimeout);

/// <summary>The rollout state's JSON in the replicated dictionary (the same form as on the wire).</summary>
internal static class RolloutJson
{
    private static readonly System.Text.Json.JsonSerializerOptions Options = new(System.Text.Json.JsonSerializerDefaults.Web);

    public static string Format(RolloutStatus status) => System.Text.Json.JsonSerializer.Serialize(status, Options);

    public static RolloutStatus? Parse(string json)
    {
        try
        {
            return System.Text.Json.JsonSerializer.Deserialize<RolloutStatus>(json, Options);
        }
        catch (System.Text.Json.JsonException)
        {
            return null;
        }
    }
}
