using System.Text.Json.Serialization;

namespace Nydus.Actors.Agent.Fleet;

/// <summary>One thing that happened in the fleet, as this agent saw it (<c>GET /api/v1/fleet/events</c>).</summary>
/// <param name="Kind">One of <see cref="FleetEventKinds"/>.</param>
public sealed record FleetEvent(
    [property: JsonPropertyName("time")] DateTimeOffset Time,
    [property: JsonPropertyName("kind")] string Kind,
    [property: JsonPropertyName("rollout")] string? Rollout,
    [property: JsonPropertyName("node")] string? Node,
    [property: JsonPropertyName("daemon")] string? Daemon,
    [property: JsonPropertyName("message")] string Message);

/// <summary>The answer of <c>GET /api/v1/fleet/events</c>: bounded like the daemon's <c>/api/v1/daemon/events</c>
/// (the oldest go first), with the count of every event since the agent started.</summary>
public sealed record FleetEventsBody(
    [property: JsonPropertyName("max_events")] int MaxEvents,
    [property: JsonPropertyName("total_events")] long TotalEvents,
    [property: JsonPropertyName("events")] FleetEvent[] Events);

/// <summary>Event kinds: membership as this agent's cluster node sees it, and the rollout's progress as replicated.</summary>
public static class FleetEventKinds
{
    public const string MemberUp = "member_up";
    public const string MemberUnreachable = "member_unreachable";
    public const string MemberReachable = "member_reachable";
    public const string MemberRemoved = "member_removed";
    public const string RolloutStarted = "rollout_started";
    /// <summary>The rollout's state changed (paused, running again, completed, aborted): <c>message</c> says to what.</summary>
    public const string RolloutState = "rollout_state";
    public const string CoordinatorMoved = "coordinator_moved";
    public const string DaemonUpgrading = "daemon_upgrading";
    public const string DaemonUpgraded = "daemon_upgraded";
    public const string DaemonFailed = "daemon_failed";
}

/// <summary>
/// What an agent of a fleet keeps for its <c>/metrics</c> page and <c>/api/v1/fleet/events</c>: the last events
/// (at most <see cref="MaxEvents"/>) and the rollout as this agent last recorded it. Owned by the agent's
/// <see cref="FleetNode"/>, so it outlives a restart of the node's cluster system; written by the
/// <see cref="RolloutObserverActor"/>, read by the API's threads.
/// </summary>
public sealed class FleetEventLog
{
    public const int MaxEvents = 500;

    private readonly object _gate = new();
    private readonly Queue<FleetEvent> _events = new();
    private long _total;
    private RolloutStatus? _rollout;

    public void Record(FleetEvent e)
    {
        lock (_gate)
        {
            _total++;
            _events.Enqueue(e);
            while (_events.Count > MaxEvents) _events.Dequeue();
        }
    }

    public FleetEventsBody Snapshot()
    {
        lock (_gate) return new FleetEventsBody(MaxEvents, _total, [.. _events]);
    }

    public long Total
    {
        get { lock (_gate) return _total; }
    }

    /// <summary>The rollout as this agent last recorded it in its journal (null before any).</summary>
    public RolloutStatus? Rollout
    {
        get { lock (_gate) return _rollout; }
        set { lock (_gate) _rollout = value; }
    }

    /// <summary>The events that lead from <paramref name="before"/> (this agent's previous record, null for none) to
    /// <paramref name="after"/>: a new rollout, its state, its coordinator, and each daemon's step.</summary>
    public static IEnumerable<FleetEvent> Diff(RolloutStatus? before, RolloutStatus after, DateTimeOffset now)
    {
        var id = after.Id;
        if (before is null || before.Id != id)
        {
            yield return new FleetEvent(now, FleetEventKinds.RolloutStarted, id, after.Coordinator, null,
                $"rollout {id} to {after.Binary}: {after.Targets.Length} daemons on {after.Targets.Select(t => t.Node).Distinct().Count()} agents, "
                + $"batch {after.Batch}, coordinator {after.Coordinator}");
            before = null;
        }
        else if (before.Coordinator != after.Coordinator)
        {
            yield return new FleetEvent(now, FleetEventKinds.CoordinatorMoved, id, after.Coordinator, null,
                $"the coordinator of rollout {id} moved from {before.Coordinator} to {after.Coordinator}");
        }
        if (before?.State != after.State && !(before is null && after.State == RolloutStates.Running))
        {
            yield return new FleetEvent(now, FleetEventKinds.RolloutState, id, after.Coordinator, null,
                $"rollout {id} {after.State}{(after.Message is { Length: > 0 } m ? ": " + m : "")}");
        }
        var previous = before?.Targets.ToDictionary(t => (t.Node, t.Daemon)) ?? [];
        foreach (var t in after.Targets)
        {
            if (previous.TryGetValue((t.Node, t.Daemon), out var p) && p.State == t.State) continue;
            switch (t.State)
            {
                case RolloutTargetStates.Upgrading:
                    yield return new FleetEvent(now, FleetEventKinds.DaemonUpgrading, id, t.Node, t.Daemon,
                        $"daemon {t.Daemon} on {t.Node} upgrading to {after.Binary} (attempt {t.Attempts})");
                    break;
                case RolloutTargetStates.Done:
                    yield return new FleetEvent(now, FleetEventKinds.DaemonUpgraded, id, t.Node, t.Daemon,
                        $"daemon {t.Daemon} on {t.Node} upgraded: pid {t.OldPid} -> {t.NewPid}{(t.Message is { Length: > 0 } m ? " (" + m + ")" : "")}");
                    break;
                case RolloutTargetStates.Failed:
                    yield return new FleetEvent(now, FleetEventKinds.DaemonFailed, id, t.Node, t.Daemon,
                        $"daemon {t.Daemon} on {t.Node} failed: {t.Message}");
                    break;
            }
        }
    }
}
