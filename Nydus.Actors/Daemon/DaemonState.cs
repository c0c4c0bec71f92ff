namespace Nydus.Actors.Daemon;

/// <summary>
/// The state a daemon reports through the API. The numbers are upstream's (service/src/daemon.rs) and are part of
/// the contract with supervisors, although JSON only ever carries the name.
/// </summary>
public enum DaemonState
{
    Init = 1,
    Running = 2,
    Ready = 3,
    Stopped = 4,
    Unknown = 5,
}

public static class DaemonStateNames
{
    /// <summary>The upper-case name upstream puts in JSON ("RUNNING").</summary>
    public static string ToApiName(this DaemonState state) => state switch
    {
        DaemonState.Init => "INIT",
        DaemonState.Running => "RUNNING",
        DaemonState.Ready => "READY",
        DaemonState.Stopped => "STOPPED",
        _ => "UNKNOWN",
    };
}
