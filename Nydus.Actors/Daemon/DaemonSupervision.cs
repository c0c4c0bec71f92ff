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
        ActorInitializationException => Directive.Stop,
        IOException => Directive.Restart,
        TimeoutException => Directive.Restart,
        _ => Directive.Escalate,
    };
}
