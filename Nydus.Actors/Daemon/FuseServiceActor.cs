using Akka.Actor;
using Akka.Event;
using Microsoft.Win32.SafeHandles;
using Nydus.Actors.Fuse.Session;
using Nydus.Actors.Upgrade;

namespace Nydus.Actors.Daemon;

/// <summary>
/// The service of a FUSE daemon: performs the state machine's actions on its FUSE mount. Start and terminate map to
/// the session's workers (the mount stays: that is what lets an old daemon leave an upgrade without the kernel
/// noticing); umount detaches the kernel mount and then lets the workers end. Owns the session, and so the /dev/fuse
/// descriptor and the filesystem behind it, which it releases when it stops. Runs on the blocking-I/O dispatcher
/// because umount2(2) blocks.
/// For live upgrade and failover (<see cref="FuseHandoffSettings"/>): <see cref="SendFuseFd"/> hands a copy of the
/// descriptor and the handoff state to the supervisor; a service created for takeover has no session until Restore
/// receives the descriptor from the supervisor and builds the session on it (no kernel mount, no FUSE INIT).
/// </summary>
public sealed class FuseServiceActor : ReceiveActor
{
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly string _mountpoint;
    private readonly List<IDisposable> _owned;
    private readonly FuseHandoffSettings? _handoff;
    // Takeover mode: builds the session on the descriptor Restore receives.
    private readonly Func<SafeFileHandle, FuseSession>? _restoreSession;
    // Takeover mode: a session of the same file system and options, wired to nothing (see WarmUpWorkers).
    private readonly Func<SafeFileHandle, FuseSession>? _warmUpSession;
    private FuseSession? _session;
    private IActorRef? _sessionActor;
    private int _sessions;

    // The action in progress and who asked for it.
    private DaemonAction? _pending;
    private IActorRef _requester = ActorRefs.Nobody;
    private bool _unmounting;

    /// <param name="session">The session on the mounted /dev/fuse descriptor.</param>
    /// <param name="mountpoint">Where the kernel mount is.</param>
    /// <param name="owned">What this service releases when it stops, in order (the session, the device, the image).</param>
    /// <param name="handoff">Supervisor settings for sendfd/takeover; null when this daemon cannot hand over.</param>
    /// <param name="restoreSession">Takeover mode (no session yet): builds the session on the received descriptor.</param>
    /// <param name="warmUpSession">Takeover mode: builds a throwaway session of the same file system, wired to nothing.</param>
    public FuseServiceActor(FuseSession? session, string mountpoint, IDisposable[] owned, FuseHandoffSettings? handoff = null,
        Func<SafeFileHandle, FuseSession>? restoreSession = null, Func<SafeFileHandle, FuseSession>? warmUpSession = null)
    {
        _mountpoint = mountpoint;
        _owned = [.. owned];
        _handoff = handoff;
        _restoreSession = restoreSession;
        _warmUpSession = warmUpSession;
        if (session is not null) InstallSession(session);

        Receive<SendFuseFd>(m => Sender.Tell(new FuseFdSent(SendFd(m.Instances, m.BlobEntries, m.BlockExports))));
        Receive<AbandonTakeover>(_ => Abandon());

        Receive<ServiceActionRequest>(r => _pending is null, OnAction);
        Receive<ServiceActionRequest>(r => Sender.Tell(new ServiceActionResult(r.Action, $"action {_pending} is still running")));
        Receive<WorkersStarted>(_ => Complete(DaemonAction.StartService, null));
        Receive<WorkersStopped>(_ => Complete(_pending ?? DaemonAction.TerminateService, null));
        Receive<SessionEnded>(e =>
        {
            if (_unmounting) return;
            _log.Warning("FUSE connection of {MountPoint} ended ({Errno}) without an unmount by this daemon", _mountpoint, e.Errno);
            Context.Parent.Tell(new ServiceEnded($"the FUSE connection of {_mountpoint} ended ({e.Errno})"));
        });
    }

    protected override void PreStart()
    {
        base.PreStart();
        if (_restoreSession is null) return;
        // A service waiting for a takeover has time now and none later: the first decode of a state in a process paid
        // for the first use of SHA-256 and of the JSON code inside the takeover (the test logs had the fd and state
        // received in 130-1,500 ms at load 50-70 in a fresh process, 1 ms in one that had taken over before).
        var warmed = new HandoffStepTimer();
        try
        {
            FuseHandoff.WarmUp();
            warmed.Mark("handoff state");
            WarmUpWorkers();
            warmed.Mark("workers");
        }
        catch (Exception e) when (e is UpgradeException or IOException or Fuse.FuseException or InvalidOperationException)
        {
            // Only time is at stake: the takeover itself checks and reports a state that cannot be read.
            _log.Warning("Warming the takeover path of {MountPoint} failed: {Error}", _mountpoint, e.Message);
            return;
        }
        _log.Info("Warmed the takeover path of {MountPoint} in {Timings}", _mountpoint, warmed.ToString());
    }

    /// <summary>
    /// Runs what a takeover's prepare and a start's arm run, on a throwaway session of the same file system whose
    /// "device" is an eventfd nobody writes (never readable, so its armed workers read nothing): worker threads started
    /// parked with their buffers, armed, stopped and joined. Measured before (issue 20): preparing 4 workers took 30-35
    /// ms in a fresh successor, on the hot standby's path from takeover to RUNNING, since start waits for it.
    /// </summary>
    private void WarmUpWorkers()
    {
        if (_warmUpSession is null) return;
        using var placeholder = Interop.Libc.Own(Interop.Libc.EventFd(0, Interop.Libc.EFD_CLOEXEC | Interop.Libc.EFD_NONBLOCK))
                                ?? throw new IOException($"eventfd failed: {Interop.Libc.LastErrno}");
        using var session = _warmUpSession(placeholder);
        session.Prepare();
        session.Arm();
        session.Stop();
        if (!session.Wait(TimeSpan.FromSeconds(5))) throw new IOException("the warm-up session's workers did not stop within 5 s");
    }

    public static Props Props(FuseSession session, string mountpoint, FuseHandoffSettings? handoff, params IDisposable[] owned) =>
        Akka.Actor.Props.Create(() => new FuseServiceActor(session, mountpoint, owned, handoff, null)).WithDispatcher("nydus.blocking-io");

    /// <summary>A service that waits for takeover: Restore fetches the descriptor and builds the session with
    /// <paramref name="restoreSession"/>; <paramref name="owned"/> (the opened image) is released at stop.</summary>
    /// <param name="warmUpSession">Builds a session of the same file system and options wired to nothing (no notifier, no
    /// metrics): the service runs a throwaway one while it waits, so that the takeover runs warm code.</param>
    public static Props PropsForTakeover(Func<SafeFileHandle, FuseSession> restoreSession, Func<SafeFileHandle, FuseSession> warmUpSession,
        string mountpoint, FuseHandoffSettings handoff, params IDisposable[] owned) =>
        Akka.Actor.Props.Create(() => new FuseServiceActor(null, mountpoint, owned, handoff, restoreSession, warmUpSession)).WithDispatcher("nydus.blocking-io");

    private void InstallSession(FuseSession session)
    {
        _session = session;
        // A session given up after a failed takeover may still be stopping under the plain name.
        _sessionActor = Context.ActorOf(FuseSessionActor.Props(session), _sessions++ == 0 ? "fuse-session" : $"fuse-session-{_sessions}");
    }

    protected override SupervisorStrategy SupervisorStrategy() =>
        new OneForOneStrategy(maxNrOfRetries: 10, withinTimeRange: TimeSpan.FromMinutes(1), localOnlyDecider: FuseSessionActor.Decide);

    private void OnAction(ServiceActionRequest request)
    {
        _pending = request.Action;
        _requester = Sender;
        if (_sessionActor is null && request.Action is not DaemonAction.Restore)
        {
            Complete(request.Action, $"no FUSE session for {_mountpoint} yet: this daemon waits for a takeover");
            return;
        }

        switch (request.Action)
        {
            case DaemonAction.StartService:
                _sessionActor!.Tell(StartWorkers.Instance);
                break;
            case DaemonAction.TerminateService:
                _sessionActor!.Tell(StopWorkers.Instance);
                break;
            case DaemonAction.Restore:
                var (error, received) = Restore(request.Failover);
                Complete(DaemonAction.Restore, error, received);
                break;
            case DaemonAction.Umount:
                _unmounting = true;
                try
                {
                    if (!FuseMount.Unmount(_mountpoint))
                        _log.Warning("{MountPoint} was no longer mounted", _mountpoint);
                    else
                        _log.Info("Unmounted {MountPoint}", _mountpoint);
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException or Fuse.FuseException)
                {
                    Complete(DaemonAction.Umount, $"unmounting {_mountpoint} failed: {e.Message}");
                    return;
                }
                _sessionActor!.Tell(StopWorkers.Instance);
                break;
            default:
                Complete(request.Action, $"{request.Action} is not supported yet by this build");
                break;
        }
    }

    /// <summary>Upstream's restore: receive, decode, install the fd as the session's, drain on failover. Returns
    /// the error, or the received state (its mount table is mounted next, by the daemon). All or nothing: on failure
    /// the received descriptor is closed and nothing is installed.</summary>
    private (string? Error, HandoffState? Received) Restore(bool failoverRequested)
    {
        if (_session is not null) return ($"{_mountpoint} already has a FUSE session", null);
        if (_restoreSession is null || _handoff is null) return ("this daemon was not started for a takeover (--upgrade, or after a crash)", null);
        SafeFileHandle? descriptor = null;
        FuseSession? session = null;
        // Where a takeover's time goes, and which steps ran cold code (issue 20: hot standby and upgrade stall).
        var timer = new HandoffStepTimer();
        try
        {
            (HandoffState state, descriptor) = FuseHandoff.Receive(_handoff, _mountpoint);
            timer.Mark("fd and state received");
            session = _restoreSession(descriptor);
            timer.Mark("session built");
            // The kernel sent INIT to the first daemon of this connection only; without the saved answer the
            // session could not know the agreed sizes and flags (upstream: VFS initialized iff INIT options saved).
            if (state.FuseInit is { } init) session.Dispatcher.Restore(FuseHandoff.ToConnectionInfo(init));
            var isFailover = _handoff.IsFailover || failoverRequested;
            if (isFailover)
            {
                // Once, before any worker reads: requests the dead daemon read but never answered are queued again
                // (resend), aborted (flush) or left (none).
                uint? connection = state.FuseConnId != 0 ? (uint)state.FuseConnId : FuseMount.FindConnectionId(_mountpoint);
                var drained = FuseFailoverDrain.Apply(_handoff.FailoverPolicy, descriptor, connection);
                _log.Info("Failover drain on {MountPoint}: policy {Policy}, result {Result}", _mountpoint, _handoff.FailoverPolicy, drained);
            }

            _owned.InsertRange(0, [session, new FuseDevice(descriptor, _mountpoint)]);
            InstallSession(session);
            // The workers' threads start now, parked (the predecessor may still serve this connection): Start then
            // only arms them, which keeps thread creation out of an upgrade's stall.
            _sessionActor!.Tell(PrepareWorkers.Instance);
            timer.Mark("drain and install");
            _log.Info("Took over the FUSE connection of {MountPoint} (conn {ConnectionId}, INIT restored {Restored}, failover {Failover}) in {Timings}",
                _mountpoint, state.FuseConnId, state.FuseInit is not null, isFailover, timer.ToString());
            return (null, state);
        }
        catch (Exception e) when (e is UpgradeException or IOException or Fuse.FuseException)
        {
            session?.Dispose();
            descriptor?.Dispose();
            _log.Warning("Takeover of {MountPoint} failed: {Error}", _mountpoint, e.Message);
            return ($"takeover of {_mountpoint} failed: {e.Message}", null);
        }
    }

    /// <summary>Undoes a Restore whose takeover failed afterwards: its workers never started, so closing the session
    /// and this process's copy of the descriptor touches neither the kernel mount nor the predecessor.</summary>
    private void Abandon()
    {
        if (_session is null || _restoreSession is null) return;
        var session = _session;
        _session = null;
        if (_sessionActor is not null) Context.Stop(_sessionActor);
        _sessionActor = null;
        foreach (var owned in _owned.Where(o => ReferenceEquals(o, session) || o is FuseDevice).ToList())
        {
            _owned.Remove(owned);
            owned.Dispose();
        }
        _log.Info("Gave up the taken-over FUSE connection of {MountPoint}; waiting for another takeover", _mountpoint);
    }

    /// <summary>Upstream's save for <c>sendfd</c>: the state and a copy of the descriptor go to the supervisor; this
    /// daemon keeps serving. Returns the error, or null.</summary>
    private DaemonError? SendFd(System.Collections.Immutable.ImmutableArray<Persistence.MountRecord> instances,
        System.Collections.Immutable.ImmutableArray<string> blobEntries,
        System.Collections.Immutable.ImmutableArray<Persistence.BlockExportRecord> blockExports)
    {
        if (_handoff is null)
            return new DaemonError(DaemonErrorKind.Unsupported, $"the FUSE mount at {_mountpoint} cannot be handed over by this daemon");
        if (_handoff.SupervisorPath is null)
            return new DaemonError(DaemonErrorKind.UpgradeManager, "this daemon was started without --supervisor: nowhere to send the FUSE fd");
        if (_session is null)
            return new DaemonError(DaemonErrorKind.NotReady, $"no FUSE session for {_mountpoint} yet: this daemon waits for a takeover");
        if (_session.Dispatcher.Connection is not { } connection)
            return new DaemonError(DaemonErrorKind.NotReady, $"the kernel has not sent FUSE INIT for {_mountpoint} yet");
        try
        {
            var state = FuseHandoff.BuildState(_handoff, _mountpoint, connection,
                [.. (instances.IsDefault ? [] : instances).Select(Mounts.MountCommands.ToHandoff)],
                blobEntries.IsDefault ? [] : blobEntries,
                [.. (blockExports.IsDefault ? [] : blockExports).Select(e => new HandoffBlockExport(e.Name, e.Source, e.Config, e.Mountpoint, e.Address))]);
            FuseHandoff.Send(_handoff, state, _session.Device);
            _log.Info("Sent the FUSE fd of {MountPoint} and its state to supervisor {Supervisor}", _mountpoint, _handoff.SupervisorPath);
            return null;
        }
        catch (UpgradeException e)
        {
            _log.Warning("sendfd of {MountPoint} failed: {Error}", _mountpoint, e.Message);
            return new DaemonError(DaemonErrorKind.UpgradeManager, $"sending the FUSE fd to {_handoff.SupervisorPath} failed: {e.Message}");
        }
    }

    private void Complete(DaemonAction action, string? error, HandoffState? received = null)
    {
        if (_pending is null) return;
        _requester.Tell(new ServiceActionResult(action, error) { Received = received });
        _pending = null;
        _requester = ActorRefs.Nobody;
    }

    protected override void PostStop()
    {
        // The session actor (a child) has stopped its workers already; release the rest in order.
        foreach (var resource in _owned)
        {
            try
            {
                resource.Dispose();
            }
            catch (Exception e)
            {
                _log.Warning(e, "Releasing {Resource} failed", resource.GetType().Name);
            }
        }
    }
}
