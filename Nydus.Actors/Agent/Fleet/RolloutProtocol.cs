using System.Text.Json.Serialization;

namespace Nydus.Actors.Agent.Fleet;

/// <summary>Marks what crosses the fleet's network for rollouts (serialized by <see cref="FleetMessageSerializer"/>,
/// JSON under stable manifests: add records and optional fields, never reshape them; agents of different versions
/// meet in one fleet).</summary>
public interface IFleetMessage;

// ---- To the coordinator (the cluster singleton), through any agent's ClusterSingletonProxy ----

/// <summary>Starts a rolling upgrade of every daemon of every up agent to <paramref name="Binary"/> (answered with
/// <see cref="RolloutReply"/>: 201, or 409 while another rollout is running or paused).</summary>
/// <param name="Batch">Daemons upgraded at once.</param>
/// <param name="MaxUnavailable">A batch starts only while unhealthy daemons in the fleet plus the batch are at most this.</param>
/// <param name="PauseOnFailure">Pause at the first failed daemon; otherwise it is recorded failed and the rollout goes on.</param>
/// <param name="SkipOlderAgents">Daemons of agents that do not take rollout requests are skipped (otherwise the rollout
/// pauses when it reaches them).</param>
public sealed record StartRollout(
    [property: JsonPropertyName("binary")] string Binary,
    [property: JsonPropertyName("batch")] int Batch,
    [property: JsonPropertyName("max_unavailable")] int MaxUnavailable,
    [property: JsonPropertyName("pause_on_failure")] bool PauseOnFailure,
    [property: JsonPropertyName("skip_older_agents")] bool SkipOlderAgents) : IFleetMessage;

/// <summary>Asks for the current (or last) rollout.</summary>
public sealed record GetRollout : IFleetMessage
{
    public static readonly GetRollout Instance = new();
}

/// <summary>pause (no new batch; the one in progress finishes), resume (failed daemons are tried again), abort.</summary>
public sealed record ControlRollout([property: JsonPropertyName("action")] string Action) : IFleetMessage
{
    public const string Pause = "pause";
    public const string Resume = "resume";
    public const string Abort = "abort";
}

/// <summary>The coordinator's answer: a status and the rollout, or an API error kind and message.</summary>
public sealed record RolloutReply(
    [property: JsonPropertyName("status")] int Status,
    [property: JsonPropertyName("rollout")] RolloutStatus? Rollout,
    [property: JsonPropertyName("error_kind")] string? ErrorKind = null,
    [property: JsonPropertyName("error")] string? Error = null) : IFleetMessage
{
    public static RolloutReply Fail(Api.ApiErrorKind kind, string message) =>
        new(Api.ApiErrorMap.StatusOf(kind), null, kind.ToString(), message);
}

/// <summary>Rollout states.</summary>
public static class RolloutStates
{
    public const string Running = "running";
    public const string Paused = "paused";
    public const string Completed = "completed";
    /// <summary>Completed, but some daemons failed (without pause-on-failure) and kept their old binary.</summary>
    public const string CompletedWithFailures = "completed_with_failures";
    public const string Aborted = "aborted";

    public static bool IsActive(string state) => state is Running or Paused;
}

/// <summary>Target (one daemon) states.</summary>
public static class RolloutTargetStates
{
    public const string Pending = "pending";
    public const string Upgrading = "upgrading";
    public const string Done = "done";
    public const string Failed = "failed";
    /// <summary>Left out: its agent does not take rollout requests (an older version) and skip was asked.</summary>
    public const string Skipped = "skipped";
}

/// <summary>One daemon of a rollout.</summary>
public sealed record RolloutTarget(
    [property: JsonPropertyName("node")] string Node,
    [property: JsonPropertyName("daemon")] string Daemon,
    [property: JsonPropertyName("state")] string State,
    [property: JsonPropertyName("old_pid")] int OldPid,
    [property: JsonPropertyName("new_pid")] int NewPid,
    [property: JsonPropertyName("attempts")] int Attempts,
    [property: JsonPropertyName("message")] string? Message);

/// <summary>A rollout and its progress: what the coordinator keeps in the replicated rollout state (Distributed
/// Data, majority writes) and what <c>GET /api/v1/fleet/rollout</c> answers.</summary>
public sealed record RolloutStatus(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("binary")] string Binary,
    [property: JsonPropertyName("batch")] int Batch,
    [property: JsonPropertyName("max_unavailable")] int MaxUnavailable,
    [property: JsonPropertyName("pause_on_failure")] bool PauseOnFailure,
    [property: JsonPropertyName("state")] string State,
    [property: JsonPropertyName("message")] string? Message,
    [property: JsonPropertyName("coordinator")] string Coordinator,
    [property: JsonPropertyName("started_at_ms")] long StartedAtMs,
    [property: JsonPropertyName("updated_at_ms")] long UpdatedAtMs,
    [property: JsonPropertyName("batches_done")] int BatchesDone,
    [property: JsonPropertyName("targets")] RolloutTarget[] Targets) : IFleetMessage
{
    public int Count(string state) => Targets.Count(t => t.State == state);
}

// ---- Coordinator → an agent's rollout worker (/user/rollout-worker in the fleet system) ----

/// <summary>Upgrade daemon <paramref name="Daemon"/> of the receiving agent for rollout <paramref name="RolloutId"/>:
/// answered with <see cref="RolloutStepResult"/>. Idempotent: the agent records in its journal that the rollout was
/// applied to the daemon and answers a repeated request from that record.</summary>
public sealed record UpgradeForRollout(
    [property: JsonPropertyName("rollout")] string RolloutId,
    [property: JsonPropertyName("daemon")] string Daemon,
    [property: JsonPropertyName("binary")] string Binary,
    [property: JsonPropertyName("settle_ms")] long SettleMs) : IFleetMessage;

/// <summary>The outcome of one daemon's upgrade including its health gate.</summary>
/// <param name="Repeated">The agent had already applied this rollout to the daemon: nothing was done again.</param>
public sealed record RolloutStepResult(
    [property: JsonPropertyName("rollout")] string RolloutId,
    [property: JsonPropertyName("daemon")] string Daemon,
    [property: JsonPropertyName("ok")] bool Ok,
    [property: JsonPropertyName("repeated")] bool Repeated,
    [property: JsonPropertyName("old_pid")] int OldPid,
    [property: JsonPropertyName("new_pid")] int NewPid,
    [property: JsonPropertyName("error")] string? Error) : IFleetMessage;

// ---- The coordinator → every agent's rollout observer (/user/rollout-observer in the fleet system) ----

/// <summary>Asks an agent for the rollout as it last recorded it in its journal (answered with
/// <see cref="RecordedRollout"/>): how a coordinator finds the rollout again when the whole fleet restarted and the
/// replicated copy went with it.</summary>
public sealed record GetRecordedRollout : IFleetMessage
{
    public static readonly GetRecordedRollout Instance = new();
}

/// <summary>An agent's recorded rollout (<see cref="RolloutStatus"/> as JSON), or null when it recorded none.</summary>
public sealed record RecordedRollout([property: JsonPropertyName("rollout")] string? RolloutJson) : IFleetMessage;

// ---- The rollout worker and observer → the local NodeAgentActor (same process, not serialized) ----

/// <summary>Record this rollout state (JSON) in the agent's journal (answered with <see cref="AgentReply"/> once
/// persisted).</summary>
public sealed record RecordFleetRollout(string RolloutJson);

/// <summary>The rollout the agent recorded last (answered with <see cref="AgentReply"/>, body the JSON or null).</summary>
public sealed record GetRecordedFleetRollout
{
    public static readonly GetRecordedFleetRollout Instance = new();
}

/// <summary>The agent's idempotent upgrade (answered with <see cref="AgentReply"/>, body <see cref="RolloutApplication"/>).</summary>
public sealed record ApplyRolloutUpgrade(string RolloutId, string Daemon, string Binary);

public sealed record RolloutApplication(string RolloutId, string Daemon, int OldPid, int NewPid, bool Repeated, string ApiSocket);
