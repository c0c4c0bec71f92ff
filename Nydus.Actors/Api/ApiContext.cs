using Akka.Actor;
using Nydus.Actors.Daemon;

namespace Nydus.Actors.Api;

/// <summary>What the API handlers need: the actors that own the answers, and the few process-level switches.</summary>
/// <param name="Daemon">The daemon actor; a task because the API starts while the actor system is still being
/// created (both take a while; in parallel the daemon answers sooner).</param>
/// <param name="AskTimeout">How long a handler waits for an actor before answering 504.</param>
/// <param name="SetLogLevel">Changes the process log level; returns false for an unknown level name.</param>
public sealed record ApiContext(
    Task<IActorRef> Daemon,
    TimeSpan AskTimeout,
    Func<string, bool> SetLogLevel,
    ErrorEventLog Events)
{
    /// <summary>The daemon's state and instances as the daemon actor and its filesystem service last published them
    /// (the host hands the daemon the same one): <c>GET /api/v1/daemon</c> reads it without an actor round trip, so it
    /// answers INIT while the daemon actor is still being created.</summary>
    public required DaemonReadModel ReadModel { get; init; }

    /// <summary>Idle time after which the API closes a client's connection; null: never (see ApiServer.StartAsync).</summary>
    public TimeSpan? IdleTimeout { get; init; }

    /// <summary>Time limit of one mount, remount or umount request, from arrival to answer (queueing included): long
    /// enough to open a big image, short enough that a stuck request cannot hold the queue behind it for good. A
    /// request past it (or whose client hangs up) is answered 504 and is not carried out later.</summary>
    public TimeSpan MountTimeout { get; init; } = TimeSpan.FromMinutes(2);

    /// <summary>The daemon's table of mounted instances, read by the metrics and config endpoints (the host hands the
    /// daemon the same one).</summary>
    public Daemon.Mounts.MountMetricsRegistry Metrics { get; init; } = new();

    /// <summary>The fscache service's counters (a singleton with --fscache; the host hands the service the same
    /// object); null otherwise.</summary>
    public Fscache.FscacheMetrics? Fscache { get; init; }
}
