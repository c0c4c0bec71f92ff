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

    public ulong NodeId { get; }
    public uint Uid { get; }
    public uint Gid { get; }
    public uint Pid { get; }
}
