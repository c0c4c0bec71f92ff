using Akka.Actor;
using Akka.Cluster;
using Akka.Cluster.Tools.Singleton;
using Akka.Configuration;
using Akka.DistributedData;

namespace Nydus.Actors.Agent.Fleet;

/// <summary>
/// This agent's membership of the fleet: a second actor system (<see cref="FleetSettings.SystemName"/>, Akka.Cluster
/// over Akka.Remote) next to the agent's own local one, with a <see cref="FleetPublisherActor"/> in it. Kept apart
/// so that what the cluster does to it (a split-brain resolver downing this node ends its system) never reaches the
/// agent's journal or its daemons: when the fleet system ends without <see cref="LeaveAsync"/>, it is created again
/// after <see cref="FleetSettings.RestartDelay"/> and joins through the other seeds (Akka does not let a downed
/// system rejoin; a new incarnation must).
/// </summary>
public sealed class FleetNode
{
    private readonly FleetSettings _settings;
    private readonly Akka.Configuration.Config _config;
    private readonly IActorRef _agent;
    private readonly string _agentVersion;
    private readonly Serilog.ILogger _log;
    private readonly object _gate = new();
    private ActorSystem? _system;
    private IActorRef? _publisher;
    private IActorRef? _coordinator;
    private bool _leaving;
    private int _incarnation;

    private FleetNode(FleetSettings settings, Akka.Configuration.Config config, IActorRef agent, string agentVersion, Serilog.ILogger log)
    {
        _settings = settings;
        _config = config;
        _agent = agent;
        _agentVersion = agentVersion;
        _log = log;
    }

    public FleetSettings Settings => _settings;

    /// <summary>This agent's fleet events and the rollout as it last recorded it (for /metrics and the events API);
    /// kept across restarts of the cluster node.</summary>
    public FleetEventLog Events { get; } = new();

    /// <summary>How many times the fleet system was started (1 = never restarted).</summary>
    public int Incarnation
    {
        get { lock (_gate) return _incarnation; }
    }

    /// <summary>Starts the fleet system and joins the seeds (joining goes on in the background until one answers).</summary>
    /// <param name="agentConfig">The agent's configuration (the user's --hocon file on top): cluster.conf goes below
    /// it, the <c>nydus.agent.cluster</c> values above.</param>
    /// <param name="hoconDir">The shipped HOCON files (cluster.conf).</param>
    public static FleetNode Start(FleetSettings settings, Akka.Configuration.Config agentConfig, string hoconDir, IActorRef agent, string agentVersion,
        Serilog.ILogger log)
    {
        var clusterFile = Path.Combine(hoconDir, "cluster.conf");
        if (!File.Exists(clusterFile))
            throw new FileNotFoundException($"HOCON file {clusterFile} is missing (it ships next to nydusd in hocon/)", clusterFile);
        var config = settings.ToAkkaConfig()
            .WithFallback(agentConfig)
            .WithFallback(ConfigurationFactory.ParseString(File.ReadAllText(clusterFile)))
            .WithFallback(DistributedData.DefaultConfig())
            .WithFallback(ClusterSingleton.DefaultConfig());
        var node = new FleetNode(settings, config, agent, agentVersion, log);
        node.StartSystem(restart: false);
        return node;
    }

    private void StartSystem(bool restart)
    {
        var system = ActorSystem.Create(FleetSettings.SystemName, _config);
        var seeds = _settings.SeedsFor(restart);
        Cluster.Get(system).JoinSeedNodes(seeds);
        var publisher = system.ActorOf(FleetPublisherActor.Props(_settings, _agent, _agentVersion), "fleet-publisher");
        system.ActorOf(RolloutObserverActor.Props(_agent, Events), RolloutObserverActor.Name);
        IActorRef? coordinator = null;
        if (_settings.Rollouts)
        {
            system.ActorOf(RolloutWorkerActor.Props(_agent, _settings.Rollout.StepTimeout), RolloutWorkerActor.Name);
            // The coordinator runs on the oldest up agent of the role; every agent reaches it through its proxy.
            system.ActorOf(ClusterSingletonManager.Props(RolloutCoordinatorActor.Props(_settings.Rollout), PoisonPill.Instance,
                ClusterSingletonManagerSettings.Create(system).WithRole(FleetSettings.RolloutRole)), "rollout");
            coordinator = system.ActorOf(ClusterSingletonProxy.Props("/user/rollout",
                ClusterSingletonProxySettings.Create(system).WithRole(FleetSettings.RolloutRole)), "rollout-proxy");
        }
        bool leaving;
        lock (_gate)
        {
            _system = system;
            _publisher = publisher;
            _coordinator = coordinator;
            _incarnation++;
            leaving = _leaving;
        }
        _log.Information("Fleet: node {Address} (incarnation {Incarnation}) joining through {Seeds}",
            _settings.SelfAddress, Incarnation, string.Join(", ", seeds));
        system.WhenTerminated.ContinueWith(_ => OnTerminated(system), TaskScheduler.Default);
        if (leaving) _ = system.Terminate();
    }

    private async Task OnTerminated(ActorSystem ended)
    {
        lock (_gate)
        {
            if (_leaving || !ReferenceEquals(_system, ended)) return;
            _publisher = null;
            _coordinator = null;
        }
        _log.Warning("Fleet: this node's cluster system ended (downed or removed by the others); the daemons keep running; "
                     + "a new cluster node joins in {Delay}", _settings.RestartDelay);
        while (true)
        {
            await Task.Delay(_settings.RestartDelay);
            lock (_gate)
                if (_leaving) return;
            try
            {
                StartSystem(restart: true);
                return;
            }
            catch (Exception e)
            {
                // The port may not be free yet, or the configuration of a new system fails: try again.
                _log.Warning("Fleet: restarting the cluster node failed ({Error}); trying again in {Delay}", e.Message, _settings.RestartDelay);
            }
        }
    }

    /// <summary>The fleet view from this node's replica; while the cluster node restarts, says so with no nodes.</summary>
    public async Task<FleetView> ViewAsync(TimeSpan timeout, CancellationToken token = default)
    {
        IActorRef? publisher;
        lock (_gate) publisher = _publisher;
        if (publisher is null)
            return new FleetView(true, _settings.SelfAddress.ToString(), "restarting", null, []);
        return await publisher.Ask<FleetView>(GetFleetView.Instance, timeout, token);
    }

    /// <summary>Sends a rollout command to the coordinator (wherever it runs) and returns its answer. Errors for an
    /// agent with rollouts off, or while its cluster node restarts.</summary>
    public async Task<RolloutReply> RolloutAsync(IFleetMessage command, TimeSpan timeout, CancellationToken token = default)
    {
        IActorRef? coordinator;
        lock (_gate) coordinator = _coordinator;
        if (!_settings.Rollouts)
            return RolloutReply.Fail(Api.ApiErrorKind.Unsupported, $"rollouts are off on this agent ({FleetSettings.ConfigPath}.rollouts = off)");
        if (coordinator is null)
            return RolloutReply.Fail(Api.ApiErrorKind.NotReady, "this agent's cluster node is restarting (it was removed from the fleet); try again shortly");
        return await coordinator.Ask<RolloutReply>(command, timeout, token);
    }

    /// <summary>Leaves the cluster gracefully (Akka's CoordinatedShutdown: leave, exiting, removed) and ends the fleet
    /// system; bounded by <paramref name="timeout"/>. The agent's own system and its daemons are not touched.</summary>
    public async Task LeaveAsync(TimeSpan timeout)
    {
        ActorSystem? system;
        lock (_gate)
        {
            _leaving = true;
            system = _system;
        }
        if (system is null) return;
        _log.Information("Fleet: leaving the cluster");
        try
        {
            await CoordinatedShutdown.Get(system).Run(CoordinatedShutdown.ClrExitReason.Instance).WaitAsync(timeout);
        }
        catch (TimeoutException)
        {
            _log.Warning("Fleet: leaving did not finish within {Timeout}; the cluster system is terminated", timeout);
        }
        await system.Terminate().WaitAsync(timeout).ContinueWith(_ => { });
    }

    /// <summary>The view of an agent without a cluster: its own daemons only.</summary>
    public static FleetView Standalone(IEnumerable<ManagedDaemonView> daemons, string agentVersion)
    {
        var now = DateTimeOffset.UtcNow;
        var node = new FleetNodeView("local", FleetMemberStatus.Standalone, true, agentVersion, [], now, 0, false,
            [.. daemons.Select(FleetDaemon.From)]);
        return new FleetView(false, "local", FleetMemberStatus.Standalone, null, [node]);
    }
}
