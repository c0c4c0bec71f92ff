using System.Collections.Immutable;

namespace Nydus.Actors.Daemon.Mounts;

/// <summary>Messages of <see cref="FsServiceActor"/>.</summary>
public interface IFsServiceMessage;

/// <summary>Sent by the filesystem service to its parent whenever the mount table changes, so that daemon info can
/// be answered without asking anyone.</summary>
public sealed record BackendsChanged(ImmutableSortedDictionary<string, MountedBackend> Backends) : IFsServiceMessage;
