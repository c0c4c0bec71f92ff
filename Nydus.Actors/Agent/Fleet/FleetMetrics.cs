using System.Globalization;
using System.Text;

namespace Nydus.Actors.Agent.Fleet;

/// <summary>
/// The agent's Prometheus page (<c>GET /metrics</c> on its socket): per host of the fleet (as this agent's replica
/// sees it) membership, reachability, staleness and daemons; the rollout as this agent last recorded it; the count of
/// fleet events. Everything comes from local state: the page answers during a partition too.
/// </summary>
public static class FleetMetrics
{
    private static readonly string[] RolloutStateNames =
        [RolloutStates.Running, RolloutStates.Paused, RolloutStates.Completed, RolloutStates.CompletedWithFailures, RolloutStates.Aborted];

    private static readonly string[] TargetStateNames =
        [RolloutTargetStates.Pending, RolloutTargetStates.Upgrading, RolloutTargetStates.Done, RolloutTargetStates.Failed, RolloutTargetStates.Skipped];

    public static string PrometheusText(FleetView view, RolloutStatus? rollout, long totalEvents)
    {
        var page = new Page();
        page.Series("nydus_fleet_clustered", "gauge", "1 when this agent is a member of a fleet (nydus.agent.cluster)")
            .Sample([], view.Clustered ? 1 : 0);

        (string Name, string Help, Func<FleetNodeView, double> Value)[] perNode =
        [
            ("nydus_fleet_node_up", "1 while the node is an up member of the fleet", n => n.MemberStatus is "up" or FleetMemberStatus.Standalone ? 1 : 0),
            ("nydus_fleet_node_reachable", "1 while this agent's failure detector reaches the node", n => n.Reachable ? 1 : 0),
            ("nydus_fleet_node_stale", "1 when the node's entry is old (missed publish rounds, or the node is unreachable or not up)", n => n.Stale ? 1 : 0),
            ("nydus_fleet_node_report_age_seconds", "Age of the node's latest published entry (-1: never published)", n => n.AgeSeconds),
            ("nydus_fleet_node_daemons", "Daemons the node's agent manages", n => n.Daemons.Length),
            ("nydus_fleet_node_daemons_healthy", "Daemons running with their fd held by the agent", n => n.Daemons.Count(d => d.Healthy)),
            ("nydus_fleet_node_failovers", "Failovers of the node's daemons, summed", n => n.Daemons.Sum(d => d.Failovers)),
        ];
        foreach (var (name, help, value) in perNode)
        {
            var series = page.Series(name, "gauge", help);
            foreach (var node in view.Nodes) series.Sample([("node", node.Address)], value(node));
        }

        if (rollout is not null)
        {
            page.Series("nydus_fleet_rollout_info", "gauge", "The current (or last) rollout, as this agent recorded it")
                .Sample([("rollout", rollout.Id), ("binary", rollout.Binary), ("coordinator", rollout.Coordinator)], 1);
            var state = page.Series("nydus_fleet_rollout_state", "gauge", "1 for the rollout's state, 0 for the others");
            foreach (var s in RolloutStateNames) state.Sample([("rollout", rollout.Id), ("state", s)], rollout.State == s ? 1 : 0);
            var daemons = page.Series("nydus_fleet_rollout_daemons", "gauge", "The rollout's daemons by state");
            foreach (var s in TargetStateNames) daemons.Sample([("rollout", rollout.Id), ("state", s)], rollout.Count(s));
            page.Series("nydus_fleet_rollout_batches_done", "gauge", "Batches of the rollout finished").Sample([("rollout", rollout.Id)], rollout.BatchesDone);
            page.Series("nydus_fleet_rollout_updated_timestamp_seconds", "gauge", "When the coordinator last wrote the rollout's progress (Unix time)")
                .Sample([("rollout", rollout.Id)], rollout.UpdatedAtMs / 1000.0);
        }
        page.Series("nydus_fleet_events_total", "counter", "Fleet events this agent recorded (GET /api/v1/fleet/events)").Sample([], totalEvents);
        return page.ToString();
    }

    /// <summary>Prometheus text format: HELP and TYPE once per series, then its samples.</summary>
    private sealed class Page
    {
        private readonly StringBuilder _text = new();

        public Page Series(string name, string type, string help)
        {
            _text.Append("# HELP ").Append(name).Append(' ').Append(help).Append('\n');
            _text.Append("# TYPE ").Append(name).Append(' ').Append(type).Append('\n');
            _name = name;
            return this;
        }

        private string _name = "";

        public Page Sample((string Key, string Value)[] labels, double value)
        {
            _text.Append(_name);
            if (labels.Length > 0)
            {
                _text.Append('{');
                for (int i = 0; i < labels.Length; i++)
                {
                    if (i > 0) _text.Append(',');
                    _text.Append(labels[i].Key).Append("=\"")
                        .Append(labels[i].Value.Replace("\\", "\\\\").Replace("\"", "\\\"").Replace("\n", "\\n")).Append('"');
                }
                _text.Append('}');
            }
            _text.Append(' ').Append(value.ToString("R", CultureInfo.InvariantCulture)).Append('\n');
            return this;
        }

        public override string ToString() => _text.ToString();
    }
}
