using Microsoft.Win32.SafeHandles;
using Nydus.Actors.Fuse.Abi;
using Nydus.Actors.Fuse.FileSystem;
using Nydus.Actors.Fuse.Session;

namespace Nydus.Actors.Upgrade;

/// <summary>
/// The two halves of a FUSE handoff over the supervisor socket, as plain blocking code (the service actor runs them
/// on the blocking-I/O dispatcher, each bounded by the transfer timeout): <see cref="Send"/> is <c>sendfd</c>,
/// <see cref="Receive"/> is the takeover's restore.
/// </summary>
public static class FuseHandoff
{
    /// <summary>The state a successor needs: negotiated INIT, the kernel mountpoint and connection, the mount table.</summary>
    /// <param name="instances">Every instance served, with its mount command and VFS index.</param>
    public static HandoffState BuildState(FuseHandoffSettings settings, string kernelMountpoint, FuseConnectionInfo connection,
        IReadOnlyList<HandoffInstance> instances, IReadOnlyList<string>? blobEntries = null,
        IReadOnlyList<HandoffBlockExport>? blockExports = null)
    {
        var init = new FuseInitState(FuseProtocol.KernelMajor, connection.ProtocolMinor, (ulong)connection.Flags,
            connection.MaxWrite, connection.MaxReadahead, connection.MaxPages, NoOpen: false, NoOpenDir: false,
            KernelFlags: (ulong)connection.KernelFlags);
        ulong connId = FuseMount.FindConnectionId(kernelMountpoint) ?? 0;
        var mounts = new List<HandoffMount> { settings.Mount };
        // The first shape of the state listed API instances by mountpoint only; kept so an older successor still
        // checks that it serves them all.
        foreach (var instance in instances)
        {
            if (instance.Mountpoint != settings.Mount.Mountpoint)
                mounts.Add(new HandoffMount(instance.Mountpoint, HandoffMountKinds.ApiInstance, null, null, null, false));
        }
        return new HandoffState(connId, init, mounts, [], settings.DaemonId, kernelMountpoint, instances, blobEntries, blockExports);
    }

    /// <summary>Sends the state and a copy of the descriptor (SCM_RIGHTS) to the supervisor.</summary>
    public static void Send(FuseHandoffSettings settings, HandoffState state, SafeFileHandle device)
    {
        var client = new SupervisorClient(RequireSupervisor(settings), settings.TransferTimeout);
        client.Save(state.Encode(), device);
    }

    /// <summary>
    /// Fetches the descriptor and state from the supervisor and checks that the state is for this mount: a state
    /// saved by a daemon of another mountpoint or image would serve the wrong files on the right connection.
    /// </summary>
    /// <exception cref="UpgradeException">No supervisor, a socket failure or timeout, a corrupt or mismatched state.</exception>
    public static (HandoffState State, SafeFileHandle Descriptor) Receive(FuseHandoffSettings settings, string kernelMountpoint)
    {
        var client = new SupervisorClient(RequireSupervisor(settings), settings.TransferTimeout);
        var (bytes, descriptor) = client.Restore();
        try
        {
            var state = HandoffState.Decode(bytes);
            if (state.Fscache is { } fscache)
                throw Mismatch($"the supervisor's state is an fscache singleton's (cache {fscache.CacheDir}), not a FUSE daemon's");
            if (state.KernelMountpoint is { } saved && saved != kernelMountpoint)
                throw Mismatch($"the supervisor's state is for mountpoint {saved}, not {kernelMountpoint}");
            if (state.Mounts.FirstOrDefault(m => m.Mountpoint == settings.Mount.Mountpoint) is { } mount
                && (mount.Kind != settings.Mount.Kind || mount.Source != settings.Mount.Source || mount.SharedDir != settings.Mount.SharedDir))
            {
                throw Mismatch($"the supervisor's state mounts {mount.Kind} {mount.Source ?? mount.SharedDir} at {mount.Mountpoint}, "
                               + $"this daemon serves {settings.Mount.Kind} {settings.Mount.Source ?? settings.Mount.SharedDir}");
            }

            return (state, descriptor);
        }
        catch
        {
            descriptor.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Encodes and decodes a throwaway state once, so that a successor's takeover does not pay the first use in its
    /// process of SHA-256 (the runtime loads its crypto library then) and of the state's JSON code.
    /// </summary>
    public static void WarmUp()
    {
        var sample = new HandoffState(0, new FuseInitState(FuseProtocol.KernelMajor, 0, 0, 0, 0, 0, false, false),
            [new HandoffMount("/", HandoffMountKinds.None, null, null, null, false)], [new HandoffHandle(0, 0, false, null)], "warm-up", "/",
            [new HandoffInstance("/", "rafs", "", "", [], 0)], [], [new HandoffBlockExport("", "", "", null, "")], new HandoffFscache("", null));
        HandoffState.Decode(sample.Encode());
    }

    /// <summary>What INIT agreed, as the dispatcher knows it, from a saved state.</summary>
    public static FuseConnectionInfo ToConnectionInfo(FuseInitState init) =>
        new(init.Minor, (FuseInitFlags)init.KernelFlags, (FuseInitFlags)init.Flags, init.MaxWrite, init.MaxReadahead,
            (ushort)init.MaxPages);

    private static string RequireSupervisor(FuseHandoffSettings settings) =>
        settings.SupervisorPath ?? throw new UpgradeException(UpgradeErrorKind.Socket,
            "this daemon was started without --supervisor: there is no supervisor to exchange the FUSE fd with");

    private static UpgradeException Mismatch(string message) => new(UpgradeErrorKind.CorruptState, message);
}
