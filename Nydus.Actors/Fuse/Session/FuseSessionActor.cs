using Akka.Actor;
using Akka.Event;

namespace Nydus.Actors.Fuse.Session;

/// <summary>
/// Owns the life cycle of a <see cref="FuseSession"/>'s workers: starts, stops and restarts them and hears
/// about their exits. Requests themselves never pass through the actor. The session (and so the /dev/fuse
/// descriptor) comes in through Props, so it outlives restarts of this actor: a restart stops the old
/// workers and starts new ones on the same descriptor.
/// </summary>
public sealed class FuseSessionActor : UntypedActor, IWithUnboundedStash
{
    private static readonly TimeSpan JoinTimeout = TimeSpan.FromSeconds(10);

    private readonly FuseSession _session;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly List<IActorRef> _stopRequesters = [];
    private IActorRef _starter = ActorRefs.Nobody;
    private int _generation;
    private int _remaining;
    private bool _ended;

    public FuseSessionActor(FuseSession session) => _session = session;

    public IStash Stash { get; set; } = null!;

    public static Props Props(FuseSession session) => Akka.Actor.Props.Create(() => new FuseSessionActor(session));

    /// <summary>
    /// Supervision for a parent: a worker fault (<see cref="FuseErrorKind.WorkerFaulted"/>) restarts the
    /// actor, which restarts the workers on the same descriptor; other FUSE errors stop it; the rest escalates.
    /// </summary>
    public static Directive Decide(Exception exception) => exception switch
    {
        FuseException { Kind: FuseErrorKind.WorkerFaulted } => Directive.Restart,
        FuseException => Directive.Stop,
        _ => Directive.Escalate,
    };

    protected override void PreRestart(Exception reason, object message)
    {
        StopAndJoin();
        base.PreRestart(reason, message);
    }

    protected override void PostRestart(Exception reason)
    {
        base.PostRestart(reason);
        _log.Warning("FUSE session restarted after {Reason}; starting workers again on the same descriptor", reason.Message);
        // Workers that were only prepared (a successor before its start) come back parked: its predecessor may still
        // be the one serving the connection.
        Self.Tell(_session.Armed ? StartWorkers.Instance : PrepareWorkers.Instance);
    }

    protected override void PostStop()
    {
        // Only the workers end here; the descriptor belongs to whoever created the session.
        StopAndJoin();
    }

    protected override void OnReceive(object message)
    {
        switch (message)
        {
            case StartWorkers:
                Start(armed: true);
                break;
            case PrepareWorkers:
                Start(armed: false);
                break;
            case StopWorkers:
                Sender.Tell(new WorkersStopped(_generation));
                break;
            case WorkerExited:
                // A late exit of an already accounted-for generation.
                break;
            default:
                Unhandled(message);
                break;
        }
    }

    /// <summary>Starts the workers, serving at once or (<paramref name="armed"/> false) parked until StartWorkers.</summary>
    private void Start(bool armed)
    {
        IActorRef self = Self;
        _ended = false;
        var timer = new HandoffStepTimer();
        _generation = armed
            ? _session.Start(exit => self.Tell(new WorkerExited(exit)))
            : _session.Prepare(exit => self.Tell(new WorkerExited(exit)));
        _remaining = _session.WorkerCount;
        _log.Info("FUSE session {What} {Count} workers (generation {Generation}) in {Timings}", armed ? "started" : "prepared (parked)",
            _remaining, _generation, timer.ToString());
        Context.Become(Running);
        if (armed) Started();
    }

    /// <summary>Answers whoever asked for the workers (a restart starts them by telling itself; nobody waits for that).</summary>
    private void Started()
    {
        if (Sender.Equals(Self)) return;
        _starter = Sender;
        Sender.Tell(new WorkersStarted(_generation, _remaining));
    }

    private void Running(object message)
    {
        switch (message)
        {
            case StartWorkers when !_session.Armed:
                // Prepared at the takeover: the threads wait already, so starting is one epoll_ctl per worker.
                var arming = new HandoffStepTimer();
                _session.Arm();
                _log.Info("FUSE session armed {Count} prepared workers (generation {Generation}) in {Timings}", _remaining, _generation, arming.ToString());
                Started();
                break;
            case StartWorkers:
                Sender.Tell(new WorkersStarted(_generation, _session.WorkerCount));
                break;
            case PrepareWorkers:
                break;
            case StopWorkers:
                _stopRequesters.Add(Sender);
                _session.Stop();
                Context.Become(Stopping);
                break;
            case WorkerExited exited when exited.Exit.Generation == _generation:
                OnExit(exited.Exit);
                break;
            case WorkerExited:
                break;
            default:
                Unhandled(message);
                break;
        }
    }

    private void Stopping(object message)
    {
        switch (message)
        {
            case StopWorkers:
                _stopRequesters.Add(Sender);
                break;
            case StartWorkers:
            case PrepareWorkers:
                Stash.Stash();
                break;
            case WorkerExited exited when exited.Exit.Generation == _generation:
                OnExit(exited.Exit);
                break;
            case WorkerExited:
                break;
            default:
                Unhandled(message);
                break;
        }
    }

    private void OnExit(FuseWorkerExit exit)
    {
        _remaining--;
        switch (exit.Reason)
        {
            case FuseWorkerExitReason.Faulted:
                throw new FuseException(FuseErrorKind.WorkerFaulted, exit.Errno,
                    $"FUSE worker {exit.WorkerIndex} of generation {exit.Generation} failed: {exit.Errno}", exit.Exception);
            case FuseWorkerExitReason.Unmounted when !_ended:
                _ended = true;
                _log.Info("FUSE connection ended ({Errno}); stopping the other workers", exit.Errno);
                _session.Stop();
                break;
        }

        if (_remaining > 0)
        {
            return;
        }

        _log.Info("FUSE session workers of generation {Generation} exited", _generation);
        foreach (IActorRef requester in _stopRequesters)
        {
            requester.Tell(new WorkersStopped(_generation));
        }

        _stopRequesters.Clear();
        if (_ended)
        {
            var ended = new SessionEnded(_generation, exit.Errno == Interop.Errno.Success ? Interop.Errno.ENODEV : exit.Errno);
            Context.Parent.Tell(ended);
            if (!_starter.IsNobody() && !_starter.Equals(Context.Parent))
            {
                _starter.Tell(ended);
            }
        }

        Context.Become(OnReceive);
        Stash.UnstashAll();
    }

    private void StopAndJoin()
    {
        _session.Stop();
        if (!_session.Wait(JoinTimeout))
        {
            _log.Warning("FUSE session workers did not exit within {Timeout}", JoinTimeout);
        }
    }
}
