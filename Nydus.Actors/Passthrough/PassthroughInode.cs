using Microsoft.Win32.SafeHandles;

namespace Nydus.Actors.Passthrough;

/// <summary>
/// A host file the kernel knows by node id: an O_PATH descriptor (no read/write rights, only a handle to
/// the inode, valid across renames), the host's (device, inode) key, and how many lookups the kernel holds.
/// </summary>
internal sealed class PassthroughInode
{
    public PassthroughInode(ulong nodeId, SafeFileHandle pathHandle, ulong device, ulong inode, uint fileType)
    {
        NodeId = nodeId;
        PathHandle = pathHandle;
        Device = device;
        Inode = inode;
        FileType = fileType;
    }

    public ulong NodeId { get; }

    /// <summary>O_PATH descriptor; reopened for I/O through /proc/self/fd/N.</summary>
    public SafeFileHandle PathHandle { get; }

    public ulong Device { get; }

    public ulong Inode { get; }

    /// <summary>S_IFMT bits at lookup time (a host inode never changes type).</summary>
    public uint FileType { get; }

    /// <summary>Lookup references held by the kernel; guarded by the inode table's lock.</summary>
    public ulong LookupCount { get; set; }

    public int Descriptor => (int)PathHandle.DangerousGetHandle();
}
