using Nydus.Actors.Fuse.Abi;

namespace Nydus.Actors.Fuse.FileSystem;

/// <summary>Who asks and which request this is: the caller fields of fuse_in_header.</summary>
public readonly struct FuseContext
{
    public FuseContext(FuseOpcode opcode, ulong unique, ulong nodeId, uint uid, uint gid, uint pid)
    {
        Opcode = opcode;
        Unique = unique;
        NodeId = nodeId;
        Uid = uid;
        Gid = gid;
        Pid = pid;
    }

    public FuseOpcode Opcode { get; }

    /// <summary>Request id, with <see cref="FuseProtocol.UniqueResendBit"/> set when the kernel resent it.</summary>
    public ulong Unique { get; }

    /// <summary>The kernel resent this request after a failover (bit 63 of <see cref="Unique"/>).</summary>
    public bool IsResent => (Unique & FuseProtocol.UniqueResendBit) != 0;

    /// <summary><see cref="Unique"/> without the resend bit: the id to compare or log. Replies use <see cref="Unique"/>.</summary>
    public ulong RequestId => Unique & ~FuseProtocol.UniqueResendBit;

    public ulong NodeId { get; }
    public uint Uid { get; }
    public uint Gid { get; }
    public uint Pid { get; }
}
