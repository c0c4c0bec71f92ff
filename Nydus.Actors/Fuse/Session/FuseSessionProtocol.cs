using Akka.Actor;
using Nydus.Actors.Interop;

namespace Nydus.Actors.Fuse.Session;

/// <summary>Messages of <see cref="FuseSessionActor"/>.</summary>
public interface IFuseSessionMessage
{
}

/// <summary>Start the worker threads (no-op answer when already running). Answered with <see cref="WorkersStarted"/>.</summary>
public sealed record StartWorkers : IFuseSessionMessage
{
    public static StartWorkers Instance { get; } = new();
}

/// <summary>Start the worker threads parked (<see cref="FuseSession.Prepare"/>): nothing is read from the device until
/// <see cref="StartWorkers"/> arms them. Not answered; a no-op when workers exist already.</summary>
public sealed record PrepareWorkers : IFuseSessionMessage
{
    public static PrepareWorkers Instance { get; } = new();
}

/// <summary>Wake and end the workers, leaving the mount alive. Answered with <see cref="WorkersStopped"/> once all exited.</summary>
public sealed record StopWorkers : IFuseSessionMessage
{
    public static StopWorkers Instance { get; } = new();
}

/// <summary>The workers of <paramref name="Generation"/> are running.</summary>
public sealed record WorkersStarted(int Generation, int Count) : IFuseSessionMessage;

/// <summary>Every worker of <paramref name="Generation"/> has exited.</summary>
public sealed record WorkersStopped(int Generation) : IFuseSessionMessage;

/// <summary>A worker thread ended (sent by the worker's thread to the actor itself).</summary>
public sealed record WorkerExited(FuseWorkerExit Exit) : IFuseSessionMessage;

/// <summary>
/// The kernel connection is gone (unmounted or aborted: reads answered ENODEV). Sent to the parent and to
/// whoever started the workers; the actor then stays idle.
/// </summary>
public sealed record SessionEnded(int Generation, Errno Errno) : IFuseSessionMessage;
