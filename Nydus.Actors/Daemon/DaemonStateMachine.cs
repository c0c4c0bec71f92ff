namespace Nydus.Actors.Daemon;

/// <summary>States of the daemon's state machine. They differ from <see cref="DaemonState"/>: upstream keeps the
/// machine's state and the reported state in separate variables, and only a successful action moves the latter.</summary>
public enum DaemonFsmState
{
    Init,
    Ready,
    Running,
    Die,
}

/// <summary>Inputs of the state machine, as upstream names them.</summary>
public enum DaemonInput
{
    Mount,
    Takeover,
    Start,
    Stop,
    Exit,
}

/// <summary>What a transition does once it is committed.</summary>
public enum DaemonAction
{
    None,
    Restore,
    StopStateMachine,
    StartService,
    Umount,
    TerminateService,
}

/// <summary>
/// Upstream's transition table (service/src/daemon.rs, <c>state_machine!</c>) as data. Any pair that is not listed
/// is an unexpected event: the machine does not move.
/// </summary>
public static class DaemonStateMachine
{
    public static bool TryTransition(DaemonFsmState from, DaemonInput input, out DaemonFsmState to, out DaemonAction action)
    {
        (DaemonFsmState, DaemonAction)? transition = (from, input) switch
        {
            (DaemonFsmState.Init, DaemonInput.Mount) => (DaemonFsmState.Ready, DaemonAction.None),
            (DaemonFsmState.Init, DaemonInput.Takeover) => (DaemonFsmState.Ready, DaemonAction.Restore),
            (DaemonFsmState.Init, DaemonInput.Stop) => (DaemonFsmState.Die, DaemonAction.StopStateMachine),
            (DaemonFsmState.Ready, DaemonInput.Start) => (DaemonFsmState.Running, DaemonAction.StartService),
            (DaemonFsmState.Ready, DaemonInput.Stop) => (DaemonFsmState.Die, DaemonAction.Umount),
            (DaemonFsmState.Ready, DaemonInput.Exit) => (DaemonFsmState.Die, DaemonAction.StopStateMachine),
            (DaemonFsmState.Running, DaemonInput.Stop) => (DaemonFsmState.Ready, DaemonAction.TerminateService),
            _ => null,
        };
        (to, action) = transition ?? (from, DaemonAction.None);
        return transition is not null;
    }

    /// <summary>The reported state after an action succeeded (upstream: each action sets it).</summary>
    public static DaemonState? ReportedStateAfter(DaemonAction action) => action switch
    {
        DaemonAction.StartService => DaemonState.Running,
        DaemonAction.TerminateService => DaemonState.Ready,
        DaemonAction.Umount => DaemonState.Stopped,
        DaemonAction.Restore => DaemonState.Ready,
        DaemonAction.StopStateMachine => DaemonState.Stopped,
        _ => null,
    };

    /// <summary>The inputs <c>trigger_stop()</c> sends from a reported state: a signal shutdown, which unmounts.</summary>
    public static DaemonInput[] StopSequence(DaemonState reported) => reported switch
    {
        DaemonState.Stopped => [],
        DaemonState.Running => [DaemonInput.Stop, DaemonInput.Stop],
        _ => [DaemonInput.Stop],
    };

    /// <summary>The inputs <c>trigger_exit()</c> sends: leaves without unmounting (how an old daemon leaves an upgrade).</summary>
    public static DaemonInput[] ExitSequence(DaemonState reported) => reported switch
    {
        DaemonState.Stopped => [],
        DaemonState.Init => [DaemonInput.Stop],
        DaemonState.Running => [DaemonInput.Stop, DaemonInput.Exit],
        _ => [DaemonInput.Exit],
    };
}
