using System.Runtime.InteropServices;

namespace Nydus.Actors.Fuse.Abi;

/// <summary>struct fuse_in_header: in front of every request (40 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
public readonly struct FuseInHeader
{
    public readonly uint Length;
    public readonly FuseOpcode Opcode;
    public readonly ulong Unique;
    public readonly ulong NodeId;
    public readonly uint Uid;
    public readonly uint Gid;
    public readonly uint Pid;
    /// <summary>Length of request extensions in 8-byte units (only with SECURITY_CTX or CREATE_SUPP_GROUP).</summary>
    public readonly ushort TotalExtensionLength;
    private readonly ushort _padding;

    public FuseInHeader(uint length, FuseOpcode opcode, ulong unique, ulong nodeId, uint uid, uint gid, uint pid)
    {
        Length = length;
        Opcode = opcode;
        Unique = unique;
        NodeId = nodeId;
        Uid = uid;
        Gid = gid;
        Pid = pid;
    }
}

/// <summary>struct fuse_out_header: in front of every reply and notification (16 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
public struct FuseOutHeader
{
    public uint Length;
    /// <summary>Zero or a negated errno; for notifications the notify code.</summary>
    public int Error;
    public ulong Unique;
}
