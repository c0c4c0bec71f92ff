using Nydus.Actors.Agent.Fleet;
using Xunit;

namespace Nydus.Actors.Tests.Agent;

/// <summary>The fleet's events and Prometheus page from rollout states (the fleet tests check them on real agents;
/// these pin the mapping from one state to the next).</summary>
public sealed class FleetEventsTests
{
    private const string A = "akka.tcp://nydus-fleet@10.0.0.1:4053";
    private const string B = "akka.tcp://nydus-fleet@10.0.0.2:4053";
    private static readonly DateTimeOffset Now = DateTimeOffset.UnixEpoch;

    private static RolloutStatus Rollout(string state, string coordinator, params (string Node, string State)[] targets) =>
        new("r-1", "/opt/nydusd", 1, 1, true, state, null, coordinator, 1, 1_700_000_000_123, 0,
            [.. targets.Select(t => new RolloutTarget(t.Node, "d1", t.State, 10, t.State == RolloutTargetStates.Done ? 20 : 0, 1, null))]);

    [Fact]
    public void A_rollout_seen_step_by_step_gives_one_event_per_change()
    {
        var started = Rollout(RolloutStates.Running, A, (B, "pending"), (A, "pending"));
        var upgrading = Rollout(RolloutStates.Running, A, (B, "upgrading"), (A, "pending"));
        var done = Rollout(RolloutStates.Running, A, (B, "done"), (A, "pending"));
        var moved = Rollout(RolloutStates.Running, B, (B, "done"), (A, "pending"));
        var paused = Rollout(RolloutStates.Paused, B, (B, "done"), (A, "failed"));

        Assert.Equal([FleetEventKinds.RolloutStarted], FleetEventLog.Diff(null, started, Now).Select(e => e.Kind));
        var step = Assert.Single(FleetEventLog.Diff(started, upgrading, Now));
        Assert.Equal((FleetEventKinds.DaemonUpgrading, B, "d1"), (step.Kind, step.Node, step.Daemon));
        var upgraded = Assert.Single(FleetEventLog.Diff(upgrading, done, Now));
        Assert.Equal(FleetEventKinds.DaemonUpgraded, upgraded.Kind);
        Assert.Contains("pid 10 -> 20", upgraded.Message);
        Assert.Equal([FleetEventKinds.CoordinatorMoved], FleetEventLog.Diff(done, moved, Now).Select(e => e.Kind));
        Assert.Equal([FleetEventKinds.RolloutState, FleetEventKinds.DaemonFailed], FleetEventLog.Diff(moved, paused, Now).Select(e => e.Kind));
        Assert.Empty(FleetEventLog.Diff(paused, paused, Now));
        // Another rollout: started afresh, its steps not compared with the last one's.
        Assert.Equal([FleetEventKinds.RolloutStarted], FleetEventLog.Diff(paused, started with { Id = "r-2" }, Now).Select(e => e.Kind));
    }

    [Fact]
    public void The_event_log_keeps_the_latest_events_and_counts_all()
    {
        var log = new FleetEventLog();
        for (int i = 0; i < FleetEventLog.MaxEvents + 10; i++) log.Record(new FleetEvent(Now, FleetEventKinds.MemberUp, null, A, null, $"e{i}"));
        var body = log.Snapshot();
        Assert.Equal(FleetEventLog.MaxEvents + 10, body.TotalEvents);
        Assert.Equal(FleetEventLog.MaxEvents, body.Events.Length);
        Assert.Equal("e10", body.Events[0].Message);
    }

    [Fact]
    public void The_prometheus_page_has_a_series_per_node_and_the_rollouts_counts()
    {
        var node = new FleetNodeView(A, "up", true, "1.0", [], Now, 0.5, false,
            [new FleetDaemon("d1", 10, "running", true, "/mnt", 2, false, "/b", null), new FleetDaemon("d2", 11, "failed", false, "/mnt2", 1, false, "/b", null)]);
        var gone = new FleetNodeView(B, FleetMemberStatus.Absent, false, "1.0", [], Now, 30, true, []);
        var text = FleetMetrics.PrometheusText(new FleetView(true, A, "up", A, [node, gone]),
            Rollout(RolloutStates.Paused, A, (B, "done"), (A, "failed")), 7);
        var lines = text.Split('\n');
        Assert.Contains("nydus_fleet_clustered 1", lines);
        Assert.Contains($"nydus_fleet_node_up{{node=\"{A}\"}} 1", lines);
        Assert.Contains($"nydus_fleet_node_up{{node=\"{B}\"}} 0", lines);
        Assert.Contains($"nydus_fleet_node_stale{{node=\"{B}\"}} 1", lines);
        Assert.Contains($"nydus_fleet_node_daemons{{node=\"{A}\"}} 2", lines);
        Assert.Contains($"nydus_fleet_node_daemons_healthy{{node=\"{A}\"}} 1", lines);
        Assert.Contains($"nydus_fleet_node_failovers{{node=\"{A}\"}} 3", lines);
        Assert.Contains("nydus_fleet_rollout_state{rollout=\"r-1\",state=\"paused\"} 1", lines);
        Assert.Contains("nydus_fleet_rollout_state{rollout=\"r-1\",state=\"running\"} 0", lines);
        Assert.Contains("nydus_fleet_rollout_daemons{rollout=\"r-1\",state=\"done\"} 1", lines);
        Assert.Contains("nydus_fleet_rollout_daemons{rollout=\"r-1\",state=\"failed\"} 1", lines);
        Assert.Contains("nydus_fleet_rollout_updated_timestamp_seconds{rollout=\"r-1\"} 1700000000.123", lines);
        Assert.Contains("nydus_fleet_events_total 7", lines);
        Assert.Single(lines, l => l == "# TYPE nydus_fleet_node_up gauge");
    }
}
