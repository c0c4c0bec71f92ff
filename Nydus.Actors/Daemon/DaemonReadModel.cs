using System.Collections.Immutable;

namespace Nydus.Actors.Daemon;

/// <summary>
/// What <c>GET /api/v1/daemon</c> reports, readable from any thread without asking an actor. The host makes it
/// before anything else of the daemon exists (state INIT, no instances: what a daemon is before its first input), so
/// the API answers from the moment Kestrel listens, while the actor system, the journal and the daemon actor are still
/// coming up (nydus-snapshotter polls this state until INIT or RUNNING). It only mirrors what others decided: the
/// daemon actor writes the state its <see cref="DaemonStateMachine"/> reached (before it answers the input that got
/// there), the filesystem service writes its mount table (before it answers the mount, remount or umount).
/// </summary>
public sealed class DaemonReadModel(string? id, string? supervisor)
{
    private readonly Lock _writers = new();
    private volatile DaemonInfo _current = new(id, supervisor, DaemonState.Init,
        ImmutableSortedDictionary<string, MountedBackend>.Empty.WithComparers(StringComparer.Ordinal));

    /// <summary>The latest state and instances; an immutable snapshot.</summary>
    public DaemonInfo Current => _current;

    /// <summary>The daemon actor's reported state, once its state machine moved there.</summary>
    internal void PublishState(DaemonState state)
    {
        lock (_writers) _current = _current with { State = state };
    }

    /// <summary>The filesystem service's mount table, once it changed.</summary>
    internal void PublishBackends(ImmutableSortedDictionary<string, MountedBackend> backends)
    {
        lock (_writers) _current = _current with { Backends = backends };
    }
}
