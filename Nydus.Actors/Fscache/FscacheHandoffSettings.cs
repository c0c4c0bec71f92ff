using Microsoft.Win32.SafeHandles;

namespace Nydus.Actors.Fscache;

/// <summary>What an fscache singleton needs to hand its cachefiles descriptor to a supervisor and to take one over.</summary>
/// <param name="SupervisorPath">The <c>--supervisor</c> socket; null without one (sendfd and takeover then fail).</param>
/// <param name="TransferTimeout">Bound of each connect/send/receive on the supervisor socket.</param>
/// <param name="DaemonId">The <c>--id</c>, written into the state.</param>
/// <param name="CacheDir">The <c>--fscache</c> directory (absolute): a successor refuses a state for another cache.</param>
/// <param name="Tag">The <c>--fscache-tag</c>, checked likewise.</param>
/// <param name="Adopt">Wraps a received descriptor as this daemon's device (the real one, or the simulation's).</param>
public sealed record FscacheHandoffSettings(
    string? SupervisorPath,
    TimeSpan TransferTimeout,
    string DaemonId,
    string CacheDir,
    string? Tag,
    Func<SafeFileHandle, ICachefilesDevice> Adopt);
