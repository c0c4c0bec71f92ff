using System.Collections.Immutable;
using Akka.Actor;

namespace Nydus.Actors.Daemon.Mounts;

/// <summary>
/// The filesystem service: owns the mount table of this daemon's FUSE mount (one child per mounted instance) and
/// routes the API's mount, remount and umount requests. It starts with an empty table and reports it to its parent.
/// </summary>
public sealed class FsServiceActor : ReceiveActor
{
    private readonly ImmutableSortedDictionary<string, MountedBackend> _backends =
        ImmutableSortedDictionary<string, MountedBackend>.Empty.WithComparers(StringComparer.Ordinal);

    /// <param name="commandLineBackend">The instance mounted from the command line, if any.</param>
    public FsServiceActor(MountedBackend? commandLineBackend)
    {
        if (commandLineBackend is not null)
            _backends = _backends.Add(commandLineBackend.Mountpoint, commandLineBackend);
    }

    protected override void PreStart() => Context.Parent.Tell(new BackendsChanged(_backends));
}
