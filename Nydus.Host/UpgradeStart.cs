using Nydus.Actors.Fuse.Session;
using Nydus.Actors.Upgrade;
using Serilog;

namespace Nydus.Host;

/// <summary>Why a FUSE daemon starts without mounting: it is to take over an existing kernel connection.</summary>
public enum TakeoverReason
{
    /// <summary><c>--upgrade</c>: a running predecessor hands over (no drain: it answered what it read).</summary>
    Upgrade,
    /// <summary>The predecessor crashed (§3): the failover policy is applied once to the taken-over fd.</summary>
    Failover,
}

/// <summary>
/// The start of a daemon that takes over instead of mounting (upstream §3/§4): with <c>--upgrade</c>, or when crash
/// detection finds the mountpoint still mounted and the API socket dead. Such a daemon opens its image (so the
/// takeover finds it warm), serves the API and waits in INIT: no kernel mount, no Mount/Start, no FUSE INIT.
/// <c>PUT /api/v1/daemon/fuse/takeover</c> then fetches the fd and state from the supervisor.
/// </summary>
public static class UpgradeStart
{
    /// <summary>
    /// Whether this start is a takeover. Must run before the API server removes and rebinds the socket: a dead
    /// predecessor's socket file is the evidence of the crash.
    /// </summary>
    public static TakeoverReason? Detect(NydusdOptions options)
    {
        // An fscache singleton has no mount to find a crash by: a supervisor starts its successor with --upgrade,
        // after an upgrade and after a crash alike (the kernel's restore makes both the same takeover).
        if (options.Singleton) return options.Upgrade && options.Fscache is not null ? TakeoverReason.Upgrade : null;
        // A virtio-fs daemon has no connection to take over (qemu does not reconnect); its command line refuses --upgrade.
        if (options.VirtioFsSocket is not null) return null;
        if (options.Upgrade) return TakeoverReason.Upgrade;
        var mountpoint = Path.GetFullPath(options.Mountpoint!);
        if (options.ApiSock is not null && CrashDetector.PredecessorCrashed(mountpoint, options.ApiSock))
        {
            Log.Warning("{MountPoint} is still mounted and API socket {ApiSocket} is dead: the previous daemon crashed; "
                        + "waiting in INIT for a takeover", mountpoint, options.ApiSock);
            return TakeoverReason.Failover;
        }
        return null;
    }

    /// <summary>What the FUSE service needs for sendfd and takeover, from the command line.</summary>
    public static FuseHandoffSettings HandoffSettings(NydusdOptions options, TimeSpan transferTimeout, bool isFailover)
    {
        // The command line's instance; the API's instances come from the journal, which both processes share.
        var mountpoint = options.VirtualMountpoint;
        var mount = options.SharedDir is { } shared
            ? new HandoffMount(mountpoint, HandoffMountKinds.Passthrough, null, null, Path.GetFullPath(shared), options.Writable)
            : options.Bootstrap is { } bootstrap
                ? new HandoffMount(mountpoint, HandoffMountKinds.Rafs, Path.GetFullPath(bootstrap),
                    options.Config is { } config ? Path.GetFullPath(config) : null, null, false)
                : new HandoffMount(mountpoint, HandoffMountKinds.None, null, null, null, false);
        return new FuseHandoffSettings(options.Supervisor, transferTimeout, options.Id ?? "", mount,
            FuseFailoverDrain.Parse(options.FailoverPolicy), isFailover);
    }
}
