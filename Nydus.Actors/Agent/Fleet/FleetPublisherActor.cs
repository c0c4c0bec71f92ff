using Akka.Actor;
using Akka.Cluster;
using Akka.DistributedData;
using Akka.Event;

namespace Nydus.Actors.Agent.Fleet;

/// <summary>
/// Runs in the fleet's actor system (one per agent): every publish interval it reads the local agent's list of daemons
/// and writes it as this node's entry of the replicated fleet state, an <see cref="LWWDictionary{TKey,TValue}"/> keyed
/// by node address (Akka.DistributedData gossips it to every member). It keeps the latest replicated dictionary
/// (subscribed) and answers <see cref="GetFleetView"/> from it and the cluster's membership, locally: the view never
/// waits on another node, so it answers during a partition too (with the cut-off nodes' entries growing old).
/// </summary>
public sealed class FleetPublisherActor : ReceiveActor, IWithTimers
{
    /// <summary>The replicated fleet state: node address → that agent's <see cref="FleetNodeReport"/> as JSON.</summary>
    public static readonly LWWDictionaryKey<string, string> StateKey = new("nydus-fleet-nodes");

    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly FleetSettings _settings;
    private readonly IActorRef _agent;
    private readonly string _agentVersion;
    private readonly Cluster _cluster = Cluster.Get(Context.System);
    private readonly IActorRef _replicator = DistributedData.Get(Context.System).Replicator;
    private readonly string _self;
    private LWWDictionary<string, string> _state = LWWDictionary<string, string>.Empty;
    private FleetNodeReport? _own;
    private bool _reading;

    public ITimerScheduler Timers { get; set; } = null!;

    private sealed record Publish
    {
        public static readonly Publish Instance = new();
    }

    private sealed record LocalDaemons(ManagedDaemonView[] Daemons);

    private sealed record LocalDaemonsFailed(Exception Cause);

    public FleetPublisherActor(FleetSettings settings, IActorRef agent, string agentVersion)
    {
        _settings = settings;
        _agent = agent;
        _agentVersion = agentVersion;
        _self = _cluster.SelfAddress.ToString();

        Receive<Publish>(_ => ReadLocalDaemons());
        Receive<LocalDaemons>(l =>
        {
            _reading = false;
            _own = new FleetNodeReport(_self, _agentVersion, [.. _cluster.SelfRoles.Order(StringComparer.Ordinal)],
                DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(), [.. l.Daemons.Select(FleetDaemon.From)],
                _settings.Rollouts ? [RolloutCoordinatorActor.Capability] : null);
            var json = _own.ToJson();
            var node = _cluster.SelfUniqueAddress;
            _replicator.Tell(Dsl.Update(StateKey, LWWDictionary<string, string>.Empty, WriteLocal.Instance,
                state => state.SetItem(node, _self, json)));
        });
        Receive<LocalDaemonsFailed>(f =>
        {
            _reading = false;
            _log.Warning("The fleet entry of this agent was not refreshed: its daemon list did not come ({0})", f.Cause.Message);
        });
        Receive<UpdateSuccess>(_ => { });
        Receive<IUpdateFailure>(f => _log.Warning("Writing this agent's fleet entry failed: {0}", f));
        Receive<Changed>(c =>
        {
            if (c.Key.Equals(StateKey)) _state = c.Get(StateKey);
        });
        Receive<GetFleetView>(_ => Sender.Tell(View()));
    }

    public static Props Props(FleetSettings settings, IActorRef agent, string agentVersion) =>
        Akka.Actor.Props.Create(() => new FleetPublisherActor(settings, agent, agentVersion));

    protected override void PreStart()
    {
        _replicator.Tell(Dsl.Subscribe(StateKey, Self));
        Timers.StartPeriodicTimer("publish", Publish.Instance, TimeSpan.Zero, _settings.PublishInterval);
    }

    private void ReadLocalDaemons()
    {
        // One read at a time: an agent busy with a failover answers late, and asks must not pile up behind it.
        if (_reading) return;
        _reading = true;
        _agent.Ask<AgentReply>(ListManagedDaemons.Instance, _settings.PublishInterval * 2)
            .PipeTo(Self, success: r => r.Body is ManagedDaemonView[] list ? new LocalDaemons(list) : new LocalDaemonsFailed(new InvalidOperationException(r.Error ?? "no list")),
                failure: e => new LocalDaemonsFailed(e));
    }

    private FleetView View()
    {
        var state = _cluster.State;
        var unreachable = state.Unreachable.Select(m => m.Address).ToHashSet();
        var members = state.Members.ToDictionary(m => m.Address.ToString(), m => m);
        var now = DateTimeOffset.UtcNow;
        var reports = _state.Entries
            .Select(e => FleetNodeReport.FromJson(e.Value))
            .OfType<FleetNodeReport>()
            .ToDictionary(r => r.Address, StringComparer.Ordinal);
        // This node's own latest report is known before gossip brings it back.
        if (_own is not null) reports[_self] = _own;
        // A member that has not published yet is listed too (no daemons, never published).
        foreach (var address in members.Keys.Where(a => !reports.ContainsKey(a)))
            reports[address] = new FleetNodeReport(address, "", [.. members[address].Roles.Order(StringComparer.Ordinal)], 0, []);

        var nodes = reports.Values.OrderBy(r => r.Address, StringComparer.Ordinal).Select(r =>
        {
            var member = members.GetValueOrDefault(r.Address);
            var status = member is null ? FleetMemberStatus.Absent : member.Status.ToString().ToLowerInvariant();
            var reachable = member is not null && !unreachable.Contains(member.Address);
            var published = DateTimeOffset.FromUnixTimeMilliseconds(r.PublishedAtMs);
            var age = r.PublishedAtMs == 0 ? double.PositiveInfinity : Math.Max(0, (now - published).TotalSeconds);
            // Stale: missed a few publish rounds, or the cluster no longer hears from the node (its last entry is
            // what it reported before it was cut off or left).
            var stale = age > 3 * _settings.PublishInterval.TotalSeconds || !reachable || member!.Status != MemberStatus.Up;
            return new FleetNodeView(r.Address, status, reachable, r.AgentVersion, r.Roles, published,
                double.IsPositiveInfinity(age) ? -1 : Math.Round(age, 1), stale, r.Daemons);
        }).ToArray();
        return new FleetView(true, _self, _cluster.SelfMember.Status.ToString().ToLowerInvariant(), state.Leader?.ToString(), nodes);
    }
}
