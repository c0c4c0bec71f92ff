using System.Text.Json.Serialization;

namespace Nydus.Actors.Agent;

/// <summary>Marks what the node agent persists (serialized by <see cref="AgentJournalSerializer"/>).</summary>
public interface IAgentJournalPersisted;

/// <summary>
/// One managed daemon as the agent persists it: enough to find the processes again after an agent restart (pid and
/// start time guard against pid reuse), to restart them with the same arguments and to serve their fd.
/// </summary>
public sealed record ManagedDaemonRecord(
    string Id,
    string[] Args,
    string Binary,
    string Mountpoint,
    string DaemonDir,
    string WorkDir,
    string LogFile,
    string SupervisorSocket,
    string ApiSocket,
    int Pid,
    long StartTime,
    int? StandbyPid,
    long StandbyStartTime,
    string? StandbySocket,
    int Failovers,
    int SocketGeneration,
    UpgradeSuccessor? Successor = null) : IAgentJournalPersisted;

/// <summary>
/// An upgrade's new process, written to the agent's journal (<see cref="ManagedDaemonRecord.Successor"/>) once it has
/// taken the mount over (READY) and before the old process is told to exit; cleared when the new one is recorded as
/// the daemon or the upgrade fails. An agent killed in between finds it on restart: with the old process gone it is
/// the only one holding the mount, and the agent adopts it.
/// </summary>
public sealed record UpgradeSuccessor(int Pid, long StartTime, string ApiSocket, string Binary);

public sealed record AgentDaemonSaved(ManagedDaemonRecord Record) : IAgentJournalPersisted;

public sealed record AgentDaemonRemoved(string Id) : IAgentJournalPersisted;

/// <param name="RolloutsApplied">Fleet rollouts applied to daemons (null in snapshots of agents before rollouts).</param>
/// <param name="RolloutsStarted">Rollout upgrades begun and not known to have ended (an agent killed in the middle).</param>
/// <param name="FleetRollout">The fleet's rollout as last recorded (<see cref="AgentFleetRolloutRecorded"/>), or null.</param>
public sealed record AgentSnapshot(
    ManagedDaemonRecord[] Daemons,
    AgentRolloutApplied[]? RolloutsApplied = null,
    AgentRolloutStarted[]? RolloutsStarted = null,
    string? FleetRollout = null) : IAgentJournalPersisted;

/// <summary>The fleet's rollout as this agent saw it replicated (its <see cref="Fleet.RolloutStatus"/> as JSON): kept
/// so that a fleet whose agents all restarted finds its rollout again (the replicated copy lives in memory only).
/// Only the latest matters; snapshots keep just that one.</summary>
public sealed record AgentFleetRolloutRecorded(string RolloutJson) : IAgentJournalPersisted;

/// <summary>A fleet rollout's upgrade of a daemon begins: the daemon's process then. Should the agent die before the
/// outcome is recorded, a repeated request compares the daemon's process now with this one instead of upgrading
/// it a second time.</summary>
public sealed record AgentRolloutStarted(string RolloutId, string DaemonId, string Binary, int OldPid, long OldStartTime, int OldFailovers)
    : IAgentJournalPersisted;

/// <summary>A fleet rollout was applied to a daemon: a repeated request for it is answered from this record.</summary>
public sealed record AgentRolloutApplied(string RolloutId, string DaemonId, int OldPid, int NewPid) : IAgentJournalPersisted;

/// <summary>What <c>GET /api/v1/agent/daemons</c> lists for one daemon.</summary>
public sealed record ManagedDaemonView(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("pid")] int Pid,
    [property: JsonPropertyName("state")] string State,
    [property: JsonPropertyName("api_socket")] string ApiSocket,
    [property: JsonPropertyName("mountpoint")] string Mountpoint,
    [property: JsonPropertyName("fd_held")] bool FdHeld,
    [property: JsonPropertyName("failovers")] int Failovers,
    [property: JsonPropertyName("standby_pid")] int? StandbyPid,
    [property: JsonPropertyName("standby_api_socket")] string? StandbyApiSocket,
    [property: JsonPropertyName("supervisor_socket")] string SupervisorSocket,
    [property: JsonPropertyName("binary")] string Binary,
    [property: JsonPropertyName("log_file")] string LogFile,
    [property: JsonPropertyName("message")] string? Message);

/// <summary>Managed daemon states as the list reports them.</summary>
public static class ManagedStates
{
    public const string Starting = "starting";
    public const string Running = "running";
    public const string FailingOver = "failing_over";
    public const string Upgrading = "upgrading";
    public const string Stopping = "stopping";
    /// <summary>Dead with its mount still there and nobody holding its fd: the connection is gone, no failover.</summary>
    public const string Lost = "lost";
    /// <summary>Dead and not mounted, or a failover that failed.</summary>
    public const string Failed = "failed";
}

// ---- Requests to the NodeAgentActor (answered with AgentReply) ----

public sealed record AddManagedDaemon(string Id, string[] Args);

public sealed record ListManagedDaemons
{
    public static readonly ListManagedDaemons Instance = new();
}

public sealed record GetManagedDaemon(string Id);

public sealed record UpgradeManagedDaemon(string Id, string? Binary);

public sealed record RemoveManagedDaemon(string Id);

/// <summary>An agent answer: an HTTP status and a body (or null), or an error of a kind the API maps
/// (<see cref="Api.ApiErrorMap"/>, the same map as the daemon's API).</summary>
public sealed record AgentReply(int Status, object? Body, Api.ApiErrorKind? ErrorKind = null, string? Error = null)
{
    public static AgentReply Fail(Api.ApiErrorKind kind, string message) => new(Api.ApiErrorMap.StatusOf(kind), null, kind, message);
}

// ---- Between the agent and its per-daemon actors ----

internal sealed record StartManaged
{
    public static readonly StartManaged Instance = new();
}

internal sealed record AttachManaged
{
    public static readonly AttachManaged Instance = new();
}

/// <param name="Acknowledge">Answer the sender with <see cref="ManagedStatusSaved"/> once the record is in the journal.</param>
internal sealed record ManagedStatus(ManagedDaemonView View, ManagedDaemonRecord Record, bool Persist, bool Acknowledge = false);

internal sealed record ManagedStatusSaved
{
    public static readonly ManagedStatusSaved Instance = new();
}

internal sealed record ManagedGone(string Id);

internal sealed record ManagedProcessExited(int Pid, long StartTime);

/// <summary>The child's answer to a rollout's upgrade (or the ask's failure), back at the agent.</summary>
internal sealed record RolloutUpgradeEnded(Fleet.ApplyRolloutUpgrade Request, AgentRolloutStarted Started, AgentReply Reply);

internal sealed record EnsureStandby
{
    public static readonly EnsureStandby Instance = new();
}
