using Akka.Actor;

namespace Nydus.Actors.Daemon;

/// <summary>
/// How the daemon reacts when one of its children fails, by failure kind. A restart keeps what came through Props
/// (the /dev/fuse descriptor survives); a child that cannot start is stopped so that the rest keeps serving; anything
/// not understood goes up, which ends the daemon through the state machine rather than leaving it half alive.
/// </summary>
public static class DaemonSupervision
{
    public static readonly SupervisorStrategy Strategy = new OneForOneStrategy(
        maxNrOfRetries: 10,
        withinTimeRange: TimeSpan.FromMinutes(1),
        localOnlyDecider: Decide);

    public static Directive Decide(Exception e) => e switch
    {
        // A child that cannot even be created would fail the same way again.
        ActorInitializationException => Directive.Stop,
        // FUSE: a faulted worker restarts its session on the same descriptor; other FUSE errors end the session.
        Fuse.FuseException fuse => Fuse.Session.FuseSessionActor.Decide(fuse),
        // A corrupt image is corrupt on every retry: stop that instance, keep the rest of the daemon serving.
        Rafs.RafsException => Directive.Stop,
        // Backends and caches recover by reconnecting: a fresh start of the child.
        Storage.StorageException or IOException or TimeoutException => Directive.Restart,
        _ => Directive.Escalate,
    };
}
