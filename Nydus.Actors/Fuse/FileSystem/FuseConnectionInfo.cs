using Nydus.Actors.Fuse.Abi;

namespace Nydus.Actors.Fuse.FileSystem;

/// <summary>What INIT settled between the kernel and this server.</summary>
/// <param name="ProtocolMinor">The minor both sides speak (min of kernel's and ours).</param>
/// <param name="KernelFlags">Everything the kernel offered.</param>
/// <param name="Flags">What this server took up.</param>
/// <param name="MaxWrite">Largest WRITE payload the kernel will send.</param>
/// <param name="MaxReadahead">Readahead window granted.</param>
/// <param name="MaxPages">Pages per request (with MAX_PAGES), bounding READ sizes.</param>
public sealed record FuseConnectionInfo(
    uint ProtocolMinor,
    FuseInitFlags KernelFlags,
    FuseInitFlags Flags,
    uint MaxWrite,
    uint MaxReadahead,
    ushort MaxPages)
{
    /// <summary>Where backing files are registered when the kernel granted FUSE_PASSTHROUGH on this connection, else null.</summary>
    public Session.FuseBackingFiles? BackingFiles { get; init; }

    /// <summary>The device minor of the kernel mount this connection serves (its id under /sys/fs/fuse/connections;
    /// the mount's st_dev is 0:this), 0 when unknown. A passthrough instance never crosses into this device: a shared
    /// directory that reaches the mount (a bind mount of it, say) would otherwise serve itself without end.</summary>
    public uint ServedDeviceMinor { get; init; }
}
