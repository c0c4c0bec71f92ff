using System.Collections.Immutable;
using Akka.Actor;

namespace Nydus.Actors.Daemon.Mounts;

/// <summary>
/// The filesystem service: owns the mount table of this daemon's FUSE mount (one child per mounted instance) and
/// routes the API's mount, remount and umount requests. It starts with an empty table and reports it to its parent.
/// </summary>
public sealed class FsServiceActor : ReceiveActor
{
    private ImmutableSortedDictionary<string, MountedBackend> _backends =
        ImmutableSortedDictionary<string, MountedBackend>.Empty.WithComparers(StringComparer.Ordinal);

    protected override void PreStart() => Context.Parent.Tell(new BackendsChanged(_backends));
}
