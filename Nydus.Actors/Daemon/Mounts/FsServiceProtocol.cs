using System.Collections.Immutable;
using Nydus.Actors.Config;
using Nydus.Actors.Daemon.Persistence;

namespace Nydus.Actors.Daemon.Mounts;

/// <summary>Messages of <see cref="FsServiceActor"/>.</summary>
public interface IFsServiceMessage;

/// <summary>Sent by the filesystem service to its parent whenever the mount table changes, so that daemon info can
/// be answered without asking anyone.</summary>
/// <param name="Records">Every instance's mount command and VFS index, the command line's included: what a successor
/// needs to serve the same table (it goes into the handoff state at sendfd).</param>
public sealed record BackendsChanged(ImmutableSortedDictionary<string, MountedBackend> Backends, ImmutableArray<MountRecord> Records = default)
    : IFsServiceMessage;

// ---- Requests (the API's mount endpoints, the host's restore); each is answered with MountOperationResult ----

/// <summary>Marks the requests the daemon actor forwards to its filesystem service.</summary>
public interface IMountRequest : IFsServiceMessage;

/// <summary>A mount table change asked for by a client that may give up (the API: its time limit, or a client that
/// hangs up). Once <see cref="Abandoned"/> is cancelled the change is not carried out: a queued one is dropped, an
/// image being opened is closed again instead of attached. Local messages only (a token does not travel).</summary>
public abstract record MountChangeRequest : IMountRequest
{
    public CancellationToken Abandoned { get; init; }
}

/// <summary>POST /api/v1/mount (and the command line's instance, sent by the host): attach a new instance at a free
/// virtual mountpoint. A mountpoint already serving the same source with the same config is done at once (the
/// snapshotter mounts every instance again after a restart or an upgrade); the same RAFS source with another config
/// is remounted with the new config.</summary>
public sealed record MountFilesystem(FsBackendMountCmd Command) : MountChangeRequest
{
    /// <summary>The instance already opened from <see cref="Command"/> (the host opens the command line's before the
    /// kernel mount, so a bad image or config fails the start before anything is mounted); null to open it here.</summary>
    public OpenedInstance? Opened { get; init; }

    /// <summary>Answer as soon as the instance is attached (it serves), and record it in the journal afterwards: the
    /// host's command-line instance, so that a cold start reports RUNNING without waiting for the journal to recover
    /// (the write waits for that). A write that fails then is logged; the instance keeps serving, and the command line
    /// names it again at the next start.</summary>
    public bool AnswerWhenAttached { get; init; }
}

/// <summary>PUT /api/v1/mount: replace the RAFS image under a mounted virtual mountpoint.</summary>
public sealed record RemountFilesystem(FsBackendMountCmd Command) : MountChangeRequest;

/// <summary>DELETE /api/v1/mount.</summary>
public sealed record UmountFilesystem(string Mountpoint) : MountChangeRequest;

/// <summary>Mounts again every instance the journal records that is not mounted yet (a restart with the same
/// <c>--id</c> and work dir). Answered once all were tried; failures are listed, the others serve.</summary>
public sealed record RestoreMounts : IMountRequest
{
    public static readonly RestoreMounts Instance = new();

    /// <summary>A takeover's table, from the handoff state: mounted from these records instead of the journal (which
    /// may still be recovering), and an instance already mounted here must sit at the same VFS index (node ids).</summary>
    public ImmutableArray<MountRecord>? FromHandoff { get; init; }

    /// <summary>Mountpoints that must be served once the restore is done (the predecessor served them); a missing
    /// one is a failure even when nothing else failed.</summary>
    public IReadOnlyCollection<string> Required { get; init; } = [];
}

/// <summary>From the daemon actor once a successor that deferred its journal writes runs (its predecessor is gone):
/// the journal is this daemon's now, and the changes made meanwhile are written to it.</summary>
public sealed record JournalIsOurs : IFsServiceMessage
{
    public static readonly JournalIsOurs Instance = new();
}

public enum MountErrorKind
{
    /// <summary>The mountpoint is taken, or nested in or above another mount (409).</summary>
    AlreadyExists,
    /// <summary>Nothing is mounted at the mountpoint (404).</summary>
    NotFound,
    /// <summary>The command itself is wrong: config, image, source, fs_type (400).</summary>
    Invalid,
    /// <summary>This daemon has no filesystem service (a singleton: 501).</summary>
    Unsupported,
    /// <summary>The journal could not record the change because its disk is full (507); nothing changed.</summary>
    InsufficientStorage,
    /// <summary>The daemon failed (a backend, the journal): 500.</summary>
    Failed,
    /// <summary>The client gave up (its time limit passed, or it hung up) before the change was made: 504.</summary>
    Timeout,
}

/// <summary>The answer to an <see cref="IMountRequest"/>; <see cref="Error"/> null means it was done and recorded.</summary>
public sealed record MountOperationResult(MountErrorKind? Error, string Message, ImmutableArray<string> Failures = default)
{
    public static MountOperationResult Done(string message) => new(null, message);

    public bool Succeeded => Error is null;
}

// ---- Between the filesystem service and its instance children ----

/// <summary>
/// One open of an image for one operation of the filesystem service, shared by the service and the thread that opens
/// it. Exactly one side wins: the opener claims it when the open ends (and then attaches, or reports the failure), or
/// the service expires it when the operation's time limit passes or its client gives up (and then answers 504 and
/// moves on). An opener that finds its ticket expired disposes what it opened: a late open changes nothing.
/// </summary>
internal sealed class OpenTicket(long operationId)
{
    private const int Pending = 0, Claimed = 1, Expired = 2;
    private int _state;

    /// <summary>The service's operation this open belongs to; the child's answers carry it.</summary>
    public long OperationId { get; } = operationId;

    /// <summary>The open ended in time: its result is the operation's.</summary>
    public bool TryClaim() => Interlocked.CompareExchange(ref _state, Claimed, Pending) == Pending;

    /// <summary>The operation gives up on this open: whatever it ends in is disposed or ignored.</summary>
    public bool TryExpire() => Interlocked.CompareExchange(ref _state, Expired, Pending) == Pending;
}

/// <summary>Open the command's filesystem and attach it (at <see cref="Index"/>, 0 for any free index).</summary>
internal sealed record OpenInstance(FsBackendMountCmd Command, int Index, OpenTicket Ticket)
{
    /// <summary>Already opened by the host (the command line's instance): attached as is.</summary>
    public OpenedInstance? Opened { get; init; }
}

/// <summary>Open the command's filesystem and swap it in for the mounted one.</summary>
internal sealed record ReplaceInstance(FsBackendMountCmd Command, OpenTicket Ticket);

/// <summary>Detach the instance; the child stops once it has.</summary>
internal sealed record CloseInstance(long OperationId);

/// <summary>The instance is attached (after open or replace) at <see cref="Index"/>.</summary>
internal sealed record InstanceAttached(long OperationId, string Mountpoint, int Index, MountedBackend Backend);

internal sealed record InstanceDetached(long OperationId, string Mountpoint);

/// <summary>Opening or attaching failed; nothing changed.</summary>
internal sealed record InstanceFailed(long OperationId, string Mountpoint, MountErrorKind Kind, string Message);

/// <summary>A child was restarted after a fault and asks for its mount command, to open its instance afresh.</summary>
internal sealed record InstanceRestarted(string Mountpoint, string Reason);
