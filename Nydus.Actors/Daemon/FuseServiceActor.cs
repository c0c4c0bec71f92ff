using Akka.Actor;
using Akka.Event;
using Nydus.Actors.Fuse.Session;

namespace Nydus.Actors.Daemon;

/// <summary>
/// The service of a FUSE daemon: performs the state machine's actions on its FUSE mount. Start and terminate map to
/// the session's workers (the mount stays: that is what lets an old daemon leave an upgrade without the kernel
/// noticing); umount detaches the kernel mount and then lets the workers end. Owns the session, and so the /dev/fuse
/// descriptor and the filesystem behind it, which it releases when it stops. Runs on the blocking-I/O dispatcher
/// because umount2(2) blocks.
/// </summary>
public sealed class FuseServiceActor : ReceiveActor
{
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly FuseSession _session;
    private readonly string _mountpoint;
    private readonly IDisposable[] _owned;
    private readonly IActorRef _sessionActor;

    // The action in progress and who asked for it.
    private DaemonAction? _pending;
    private IActorRef _requester = ActorRefs.Nobody;
    private bool _unmounting;

    /// <param name="session">The session on the mounted /dev/fuse descriptor.</param>
    /// <param name="mountpoint">Where the kernel mount is.</param>
    /// <param name="owned">What this service releases when it stops, in order (the session, the device, the image).</param>
    public FuseServiceActor(FuseSession session, string mountpoint, IDisposable[] owned)
    {
        _session = session;
        _mountpoint = mountpoint;
        _owned = owned;
        _sessionActor = Context.ActorOf(FuseSessionActor.Props(session), "fuse-session");

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

    public static Props Props(FuseSession session, string mountpoint, params IDisposable[] owned) =>
        Akka.Actor.Props.Create(() => new FuseServiceActor(session, mountpoint, owned)).WithDispatcher("nydus.blocking-io");

    protected override SupervisorStrategy SupervisorStrategy() =>
        new OneForOneStrategy(maxNrOfRetries: 10, withinTimeRange: TimeSpan.FromMinutes(1), localOnlyDecider: FuseSessionActor.Decide);

    private void OnAction(ServiceActionRequest request)
    {
        _pending = request.Action;
        _requester = Sender;
        switch (request.Action)
        {
            case DaemonAction.StartService:
                _sessionActor.Tell(StartWorkers.Instance);
                break;
            case DaemonAction.TerminateService:
                _sessionActor.Tell(StopWorkers.Instance);
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
                _sessionActor.Tell(StopWorkers.Instance);
                break;
            default:
                Complete(request.Action, $"{request.Action} is not supported yet by this build");
                break;
        }
    }

    private void Complete(DaemonAction action, string? error)
    {
        if (_pending is null) return;
        _requester.Tell(new ServiceActionResult(action, error));
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
