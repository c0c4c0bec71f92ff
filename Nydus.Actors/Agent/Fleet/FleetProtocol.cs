using System.Text.Json;
using System.Text.Json.Serialization;

namespace Nydus.Actors.Agent.Fleet;

/// <summary>One daemon as the fleet sees it (from the agent's list, <see cref="ManagedDaemonView"/>).</summary>
public sealed record FleetDaemon(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("pid")] int Pid,
    [property: JsonPropertyName("state")] string State,
    [property: JsonPropertyName("healthy")] bool Healthy,
    [property: JsonPropertyName("mountpoint")] string Mountpoint,
    [property: JsonPropertyName("failovers")] int Failovers,
    [property: JsonPropertyName("standby")] bool Standby,
    [property: JsonPropertyName("binary")] string Binary,
    [property: JsonPropertyName("message")] string? Message)
{
    public static FleetDaemon From(ManagedDaemonView v) => new(v.Id, v.Pid, v.State,
        v.State == ManagedStates.Running && v.FdHeld, v.Mountpoint, v.Failovers, v.StandbyPid is not null, v.Binary, v.Message);
}

/// <summary>
/// What one agent publishes to the fleet state: its daemons and when it published them (this agent's clock, Unix
/// milliseconds), so that a reader elsewhere can tell how old the entry is. Replicated as its JSON text.
/// </summary>
public sealed record FleetNodeReport(
    [property: JsonPropertyName("address")] string Address,
    [property: JsonPropertyName("agent_version")] string AgentVersion,
    [property: JsonPropertyName("roles")] string[] Roles,
    [property: JsonPropertyName("published_at_ms")] long PublishedAtMs,
    [property: JsonPropertyName("daemons")] FleetDaemon[] Daemons,
    // Added with rollouts: absent (null) in the entries of older agents, which is how the coordinator tells them.
    [property: JsonPropertyName("capabilities")] string[]? Capabilities = null)
{
    public string ToJson() => JsonSerializer.Serialize(this);

    /// <summary>Null for text that is not a report (an entry written by a different version, say): it is skipped.</summary>
    public static FleetNodeReport? FromJson(string json)
    {
        try
        {
            return JsonSerializer.Deserialize<FleetNodeReport>(json);
        }
        catch (JsonException)
        {
            return null;
        }
    }
}

/// <summary>One node of the fleet view: its latest report, how old it is, and what the cluster says of the node.</summary>
public sealed record FleetNodeView(
    [property: JsonPropertyName("address")] string Address,
    [property: JsonPropertyName("member_status")] string MemberStatus,
    [property: JsonPropertyName("reachable")] bool Reachable,
    [property: JsonPropertyName("agent_version")] string AgentVersion,
    [property: JsonPropertyName("roles")] string[] Roles,
    [property: JsonPropertyName("published_at")] DateTimeOffset PublishedAt,
    [property: JsonPropertyName("age_seconds")] double AgeSeconds,
    [property: JsonPropertyName("stale")] bool Stale,
    [property: JsonPropertyName("daemons")] FleetDaemon[] Daemons);

/// <summary>The answer of <c>GET /api/v1/fleet</c>.</summary>
public sealed record FleetView(
    [property: JsonPropertyName("clustered")] bool Clustered,
    [property: JsonPropertyName("self")] string Self,
    [property: JsonPropertyName("self_status")] string SelfStatus,
    [property: JsonPropertyName("leader")] string? Leader,
    [property: JsonPropertyName("nodes")] FleetNodeView[] Nodes);

/// <summary>Asks the fleet publisher for the fleet view (answered with <see cref="FleetView"/>).</summary>
public sealed record GetFleetView
{
    public static readonly GetFleetView Instance = new();
}

/// <summary>Member statuses as the fleet view shows them (Akka's MemberStatus in lower case, plus these).</summary>
public static class FleetMemberStatus
{
    /// <summary>Not (or no longer) a member: it left, was removed (downed), or this node has not seen it join.</summary>
    public const string Absent = "absent";
    /// <summary>This agent has no cluster configured.</summary>
    public const string Standalone = "standalone";
}
