using Akka.Actor;
using Akka.Cluster;
using Akka.DistributedData;
using Akka.Event;

namespace Nydus.Actors.Agent.Fleet;

/// <summary>
/// Every agent's witness of the fleet (<c>/user/rollout-observer</c> in the fleet system). It records each new state
/// of the replicated rollout in the agent's own journal (SQLite, or PostgreSQL by configuration), so that a fleet
/// whose agents all restarted still knows its rollout: the coordinator reads the copies back
/// (<see cref="GetRecordedRollout"/>) and goes on with the same rollout id, which every agent's records of applied
/// upgrades are keyed by, so no daemon is upgraded twice. What it records, and the cluster's membership changes, become
/// this agent's fleet events and the rollout figures of its <c>/metrics</c> page (<see cref="FleetEventLog"/>).
/// <para>States: recovering (reads the agent's last record; everything else is stashed) → observing.</para>
/// </summary>
public sealed class RolloutObserverActor : ReceiveActor, IWithUnboundedStash, IWithTimers
{
    public const string Name = "rollout-observer";

    private static readonly TimeSpan AgentTimeout = TimeSpan.FromSeconds(30);

    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly IActorRef _agent;
    private readonly FleetEventLog _events;
    private readonly Cluster _cluster = Cluster.Get(Context.System);
    private readonly IActorRef _replicator = DistributedData.Get(Context.System).Replicator;
    private string? _recordedJson;
    private RolloutStatus? _recorded;
    // A newer state that came while one was being persisted: recorded next (only the latest matters).
    private string? _pendingJson;
    private bool _recording;

    public IStash Stash { get; set; } = null!;
    public ITimerScheduler Timers { get; set; } = null!;

    private sealed record Recovered(string? Json);

    private sealed record RecoverFailed(string Why);

    private sealed record Persisted(string Json);

    private sealed record PersistFailed(string Json, string Why);

    private sealed record Retry
    {
        public static readonly Retry Instance = new();
    }

    public RolloutObserverActor(IActorRef agent, FleetEventLog events)
    {
        _agent = agent;
        _events = events;
        Recovering();
    }

    public static Props Props(IActorRef agent, FleetEventLog events) => Akka.Actor.Props.Create(() => new RolloutObserverActor(agent, events));

    protected override void PreStart() => ReadRecord();

    protected override void PostStop() => _cluster.Unsubscribe(Self);

    private void ReadRecord() =>
        _agent.Ask<AgentReply>(GetRecordedFleetRollout.Instance, AgentTimeout).PipeTo(Self,
            success: r => r.Error is null ? new Recovered(r.Body as string) : new RecoverFailed(r.Error),
            failure: e => new RecoverFailed(e.Message));

    // ---------------------------------------------------------------- recovering

    private void Recovering()
    {
        Receive<Recovered>(r =>
        {
            _recordedJson = r.Json;
            _recorded = r.Json is null ? null : RolloutJson.Parse(r.Json);
            _events.Rollout = _recorded;
            _replicator.Tell(Dsl.Subscribe(RolloutCoordinatorActor.RolloutKey, Self));
            _cluster.Subscribe(Self, ClusterEvent.SubscriptionInitialStateMode.InitialStateAsEvents,
                typeof(ClusterEvent.MemberUp), typeof(ClusterEvent.UnreachableMember), typeof(ClusterEvent.ReachableMember),
                typeof(ClusterEvent.MemberRemoved));
            Become(Observing);
            Stash.UnstashAll();
        });
        Receive<RecoverFailed>(f =>
        {
            _log.Warning("Fleet: the agent's recorded rollout could not be read ({0}); trying again", f.Why);
            Timers.StartSingleTimer("recover", Retry.Instance, TimeSpan.FromSeconds(2));
        });
        Receive<Retry>(_ => ReadRecord());
        ReceiveAny(_ => Stash.Stash());
    }

    // ---------------------------------------------------------------- observing

    private void Observing()
    {
        Receive<GetRecordedRollout>(_ => Sender.Tell(new RecordedRollout(_recordedJson)));
        Receive<Changed>(c => c.Key.Equals(RolloutCoordinatorActor.RolloutKey), c =>
        {
            if (c.Get(RolloutCoordinatorActor.RolloutKey).TryGetValue(RolloutCoordinatorActor.Entry, out var json)) Record(json);
        });
        Receive<Persisted>(p =>
        {
            _recording = false;
            var status = RolloutJson.Parse(p.Json);
            if (status is not null)
            {
                foreach (var e in FleetEventLog.Diff(_recorded, status, DateTimeOffset.UtcNow)) _events.Record(e);
                _recorded = status;
                _recordedJson = p.Json;
                _events.Rollout = status;
            }
            if (_pendingJson is { } next)
            {
                _pendingJson = null;
                Record(next);
            }
        });
        Receive<PersistFailed>(f =>
        {
            _recording = false;
            _log.Warning("Fleet: recording the rollout's state in the agent's journal failed ({0}); trying again", f.Why);
            _pendingJson ??= f.Json;
            Timers.StartSingleTimer("retry", Retry.Instance, TimeSpan.FromSeconds(2));
        });
        Receive<Retry>(_ =>
        {
            if (_pendingJson is { } next && !_recording)
            {
                _pendingJson = null;
                Record(next);
            }
        });
        Receive<ClusterEvent.MemberUp>(e => Member(FleetEventKinds.MemberUp, e.Member, "is up"));
        Receive<ClusterEvent.UnreachableMember>(e => Member(FleetEventKinds.MemberUnreachable, e.Member, "is unreachable from this agent"));
        Receive<ClusterEvent.ReachableMember>(e => Member(FleetEventKinds.MemberReachable, e.Member, "is reachable again"));
        Receive<ClusterEvent.MemberRemoved>(e => Member(FleetEventKinds.MemberRemoved, e.Member,
            $"was removed from the fleet (it was {e.PreviousStatus.ToString().ToLowerInvariant()})"));
    }

    private void Record(string json)
    {
        if (json == _recordedJson) return;
        if (_recording)
        {
            _pendingJson = json;
            return;
        }
        _recording = true;
        _agent.Ask<AgentReply>(new RecordFleetRollout(json), AgentTimeout).PipeTo(Self,
            success: r => r.Error is null ? new Persisted(json) : new PersistFailed(json, r.Error),
            failure: e => new PersistFailed(json, e.Message));
    }

    private void Member(string kind, Member member, string what) =>
        _events.Record(new FleetEvent(DateTimeOffset.UtcNow, kind, null, member.Address.ToString(), null, $"agent {member.Address} {what}"));
}
