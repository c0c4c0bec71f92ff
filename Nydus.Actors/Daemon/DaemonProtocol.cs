using System.Collections.Immutable;

namespace Nydus.Actors.Daemon;

/// <summary>Messages of <see cref="DaemonActor"/>.</summary>
public interface IDaemonMessage;

/// <summary>Feeds one input to the state machine; answered with <see cref="DaemonCommandResult"/> once its action ran.</summary>
public sealed record DaemonCommand(DaemonInput Input) : IDaemonMessage
{
    /// <summary>For Takeover: apply the failover policy to the taken-over fd even when this daemon did not detect a
    /// crash itself (<c>takeover?failover=true</c>, Nydus.NET's extension for hot standbys).</summary>
    public bool Failover { get; init; }
}

/// <summary>Upstream's <c>trigger_stop()</c>: the inputs that take the daemon to Stopped, unmounting (signals).</summary>
public sealed record TriggerStop : IDaemonMessage
{
    public static readonly TriggerStop Instance = new();
}

/// <summary>Upstream's <c>trigger_exit()</c>: leave without unmounting (the API's exit, the old side of an upgrade).</summary>
public sealed record TriggerExit : IDaemonMessage
{
    public static readonly TriggerExit Instance = new();
}

/// <summary>
/// <c>PUT /api/v1/daemon/fuse/sendfd</c>: hand a copy of the FUSE descriptor and the handoff state to the supervisor
/// (upstream's save). Not a state machine input: the daemon keeps serving. Answered with <see cref="FuseFdSent"/>.
/// </summary>
public sealed record SendFuseFd : IDaemonMessage
{
    public static readonly SendFuseFd Instance = new();

    /// <summary>The mount table (filled in by the daemon actor on the way to its service): it goes into the handoff
    /// state, so a successor serves the same table without waiting for the journal.</summary>
    public ImmutableArray<Persistence.MountRecord> Instances { get; init; } = [];

    /// <summary>The blob cache manager's bootstrap entries (filled in likewise), for the handoff state.</summary>
    public ImmutableArray<string> BlobEntries { get; init; } = [];

    /// <summary>The block service's exports (filled in likewise), for the handoff state.</summary>
    public ImmutableArray<Persistence.BlockExportRecord> BlockExports { get; init; } = [];
}

/// <summary>The answer to <see cref="SendFuseFd"/>; <see cref="Error"/> is null when the supervisor has the fd.</summary>
public sealed record FuseFdSent(DaemonError? Error);

public sealed record GetDaemonInfo : IDaemonMessage
{
    public static readonly GetDaemonInfo Instance = new();
}

/// <summary>The result of an input or a trigger sequence. <see cref="Error"/> is set when it was refused or failed.</summary>
public sealed record DaemonCommandResult(DaemonState State, DaemonError? Error)
{
    public bool Succeeded => Error is null;
}

public enum DaemonErrorKind
{
    /// <summary>The input is not valid in the current state (HTTP 400).</summary>
    UnexpectedEvent,
    /// <summary>The action of a committed transition failed (HTTP 500).</summary>
    ActionFailed,
    /// <summary>The daemon has stopped and takes no more inputs.</summary>
    Stopped,
    NotReady,
    Unsupported,
    /// <summary>The supervisor exchange failed or there is no supervisor (upstream's UpgradeManager error, HTTP 500).</summary>
    UpgradeManager,
}

public sealed record DaemonError(DaemonErrorKind Kind, string Message);

/// <summary>What <c>GET /api/v1/daemon</c> reports, before it becomes JSON.</summary>
public sealed record DaemonInfo(
    string? Id,
    string? Supervisor,
    DaemonState State,
    ImmutableSortedDictionary<string, MountedBackend> Backends);

/// <summary>One mounted filesystem as the API lists it (upstream's FsBackendDescriptor).</summary>
/// <param name="SuperMeta">A RAFS instance's superblock as upstream reports it (GET /api/v1/daemon/backend); null for others.</param>
public sealed record MountedBackend(string BackendType, string Mountpoint, DateTimeOffset MountedTime, string? RedactedConfigJson,
    Rafs.RafsSuperMeta? SuperMeta = null);

// ---- The service the daemon drives (FUSE session, or nothing for a singleton) ----

/// <summary>Asks the daemon's service child to perform a state machine action.</summary>
public sealed record ServiceActionRequest(DaemonAction Action)
{
    /// <summary>For Restore: the predecessor crashed, so drain with the failover policy (see <see cref="DaemonCommand.Failover"/>).</summary>
    public bool Failover { get; init; }
}

/// <summary>The service child's answer to <see cref="ServiceActionRequest"/>.</summary>
public sealed record ServiceActionResult(DaemonAction Action, string? Error)
{
    /// <summary>For a successful Restore: the state the supervisor handed over, whose mount table the daemon mounts
    /// before it reports READY.</summary>
    public Upgrade.HandoffState? Received { get; init; }

    public static ServiceActionResult Done(DaemonAction action) => new(action, null);
}

/// <summary>Sent by the service child when it ends on its own (the kernel unmounted, a worker died with an error):
/// upstream then shuts the whole process down.</summary>
public sealed record ServiceEnded(string Reason);

/// <summary>To the service: drop the session a Restore installed (its workers never started), because the takeover
/// failed after it (an instance of the handoff state could not be mounted). The kernel mount stays the predecessor's.</summary>
public sealed record AbandonTakeover
{
    public static readonly AbandonTakeover Instance = new();
}
