using Nydus.Actors.Fuse.Session;

namespace Nydus.Actors.Upgrade;

/// <summary>What a FUSE service needs to hand its connection to a supervisor and to take one over.</summary>
/// <param name="SupervisorPath">The <c>--supervisor</c> socket; null without one (sendfd and takeover then fail).</param>
/// <param name="TransferTimeout">Bound of each connect/send/receive on the supervisor socket.</param>
/// <param name="DaemonId">The <c>--id</c>, written into the state.</param>
/// <param name="Mount">The mounted filesystem, as the state records it and as a successor checks it.</param>
/// <param name="FailoverPolicy">Applied once to a taken-over fd when <paramref name="IsFailover"/>.</param>
/// <param name="IsFailover">The predecessor crashed (rather than handing over for an upgrade), so requests it read
/// but never answered may be pending on the connection.</param>
public sealed record FuseHandoffSettings(
    string? SupervisorPath,
    TimeSpan TransferTimeout,
    string DaemonId,
    HandoffMount Mount,
    FuseFailoverPolicy FailoverPolicy,
    bool IsFailover);
