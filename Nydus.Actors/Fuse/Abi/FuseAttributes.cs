using System.Runtime.InteropServices;

namespace Nydus.Actors.Fuse.Abi;

/// <summary>struct fuse_attr (88 bytes): what the kernel caches for an inode.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct FuseAttr
{
    public ulong Ino;
    public ulong Size;
    public ulong Blocks;
    public ulong Atime;
    public ulong Mtime;
    public ulong Ctime;
    public uint AtimeNsec;
    public uint MtimeNsec;
    public uint CtimeNsec;
    public uint Mode;
    public uint Nlink;
    public uint Uid;
    public uint Gid;
    /// <summary>Device number in the kernel's new_encode_dev form.</summary>
    public uint Rdev;
    public uint BlkSize;
    public uint Flags;
}

/// <summary>struct fuse_kstatfs (80 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
public struct FuseKstatfs
{
    public ulong Blocks;
    public ulong BlocksFree;
    public ulong BlocksAvailable;
    public ulong Files;
    public ulong FilesFree;
    public uint BlockSize;
    public uint NameLength;
    public uint FragmentSize;
    private uint _padding;
    private uint _spare0, _spare1, _spare2, _spare3, _spare4, _spare5;
}

/// <summary>struct fuse_entry_out (128 bytes): the answer to LOOKUP, MKNOD, MKDIR, SYMLINK, LINK, CREATE.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct FuseEntryOut
{
    public ulong NodeId;
    public ulong Generation;
    public ulong EntryValid;
    public ulong AttrValid;
    public uint EntryValidNsec;
    public uint AttrValidNsec;
    public FuseAttr Attr;
}

/// <summary>struct fuse_attr_out (104 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
public struct FuseAttrOut
{
    public ulong AttrValid;
    public uint AttrValidNsec;
    private uint _dummy;
    public FuseAttr Attr;
}
