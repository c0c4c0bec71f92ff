using System.Runtime.InteropServices;

namespace Nydus.Actors.Fuse.Abi;

// Fixed-size request bodies that follow fuse_in_header, in linux/fuse.h order. Read with MemoryMarshal
// after a length check; names (NUL-terminated) and data follow some of them.

[StructLayout(LayoutKind.Sequential)]
public readonly struct FuseInitIn
{
    public readonly uint Major;
    public readonly uint Minor;
    public readonly uint MaxReadahead;
    public readonly uint Flags;
    /// <summary>Upper 32 flag bits; only meaningful when <see cref="FuseInitFlags.InitExt"/> is set in Flags.</summary>
    public readonly uint Flags2;
    private readonly uint _unused0, _unused1, _unused2, _unused3, _unused4, _unused5, _unused6, _unused7, _unused8, _unused9, _unused10;

    /// <summary>Size of the struct before protocol 7.36 added flags2 and the reserved words.</summary>
    public const int CompatSize = 16;

    public FuseInitIn(uint major, uint minor, uint maxReadahead, uint flags, uint flags2)
    {
        Major = major;
        Minor = minor;
        MaxReadahead = maxReadahead;
        Flags = flags;
        Flags2 = flags2;
    }
}

[StructLayout(LayoutKind.Sequential)]
public readonly struct FuseForgetIn
{
    public readonly ulong NLookup;
}

[StructLayout(LayoutKind.Sequential)]
public readonly struct FuseForgetOne
{
    public readonly ulong NodeId;
    public readonly ulong NLookup;

    public FuseForgetOne(ulong nodeId, ulong nLookup)
    {
        NodeId = nodeId;
        NLookup = nLookup;
    }
}

[StructLayout(LayoutKind.Sequential)]
public readonly struct FuseBatchForgetIn
{
    public readonly uint Count;
    private readonly uint _dummy;

    public FuseBatchForgetIn(uint count) => Count = count;
}

[StructLayout(LayoutKind.Sequential)]
public readonly struct FuseGetAttrIn
{
    public readonly uint GetAttrFlags;
    private readonly uint _dummy;
    public readonly ulong Fh;
}

[StructLayout(LayoutKind.Sequential)]
public readonly struct FuseMknodIn
{
    public readonly uint Mode;
    public readonly uint Rdev;
    public readonly uint Umask;
    private readonly uint _padding;
}

[StructLayout(LayoutKind.Sequential)]
public readonly struct FuseMkdirIn
{
    public readonly uint Mode;
    public readonly uint Umask;
}

[StructLayout(LayoutKind.Sequential)]
public readonly struct FuseRenameIn
{
    public readonly ulong NewDir;
}

[StructLayout(LayoutKind.Sequential)]
public readonly struct FuseRename2In
{
    public readonly ulong NewDir;
    public readonly uint Flags;
    private readonly uint _padding;
}

[StructLayout(LayoutKind.Sequential)]
public readonly struct FuseLinkIn
{
    public readonly ulong OldNodeId;
}

[StructLayout(LayoutKind.Sequential)]
public readonly struct FuseSetAttrIn
{
    public readonly FuseSetAttrValid Valid;
    private readonly uint _padding;
    public readonly ulong Fh;
    public readonly ulong Size;
    public readonly ulong LockOwner;
    public readonly ulong Atime;
    public readonly ulong Mtime;
    public readonly ulong Ctime;
    public readonly uint AtimeNsec;
    public readonly uint MtimeNsec;
    public readonly uint CtimeNsec;
    public readonly uint Mode;
    private readonly uint _unused4;
    public readonly uint Uid;
    public readonly uint Gid;
    private readonly uint _unused5;
}

[StructLayout(LayoutKind.Sequential)]
public readonly struct FuseOpenIn
{
    public readonly int Flags;
    public readonly uint OpenFlags;
}

[StructLayout(LayoutKind.Sequential)]
public readonly struct FuseCreateIn
{
    public readonly int Flags;
    public readonly uint Mode;
    public readonly uint Umask;
    public readonly uint OpenFlags;
}

[StructLayout(LayoutKind.Sequential)]
public readonly struct FuseReleaseIn
{
    public readonly ulong Fh;
    public readonly int Flags;
    public readonly uint ReleaseFlags;
    public readonly ulong LockOwner;
}

[StructLayout(LayoutKind.Sequential)]
public readonly struct FuseFlushIn
{
    public readonly ulong Fh;
    private readonly uint _unused;
    private readonly uint _padding;
    public readonly ulong LockOwner;
}

[StructLayout(LayoutKind.Sequential)]
public readonly struct FuseReadIn
{
    public readonly ulong Fh;
    public readonly ulong Offset;
    public readonly uint Size;
    public readonly uint ReadFlags;
    public readonly ulong LockOwner;
    public readonly int Flags;
    private readonly uint _padding;
}

[StructLayout(LayoutKind.Sequential)]
public readonly struct FuseWriteIn
{
    public readonly ulong Fh;
    public readonly ulong Offset;
    public readonly uint Size;
    public readonly uint WriteFlags;
    public readonly ulong LockOwner;
    public readonly int Flags;
    private readonly uint _padding;
}

[StructLayout(LayoutKind.Sequential)]
public readonly struct FuseFsyncIn
{
    public readonly ulong Fh;
    public readonly uint FsyncFlags;
    private readonly uint _padding;
}

/// <summary>fuse_setxattr_in; the kernel sends only the first 8 bytes unless SETXATTR_EXT was negotiated.</summary>
[StructLayout(LayoutKind.Sequential)]
public readonly struct FuseSetXattrIn
{
    public readonly uint Size;
    public readonly int Flags;
    public readonly uint SetXattrFlags;
    private readonly uint _padding;

    public const int CompatSize = 8;
}

[StructLayout(LayoutKind.Sequential)]
public readonly struct FuseGetXattrIn
{
    public readonly uint Size;
    private readonly uint _padding;
}

[StructLayout(LayoutKind.Sequential)]
public readonly struct FuseAccessIn
{
    public readonly int Mask;
    private readonly uint _padding;
}

[StructLayout(LayoutKind.Sequential)]
public readonly struct FuseInterruptIn
{
    public readonly ulong Unique;
}

[StructLayout(LayoutKind.Sequential)]
public readonly struct FuseFallocateIn
{
    public readonly ulong Fh;
    public readonly ulong Offset;
    public readonly ulong Length;
    public readonly int Mode;
    private readonly uint _padding;
}

[StructLayout(LayoutKind.Sequential)]
public readonly struct FuseLseekIn
{
    public readonly ulong Fh;
    public readonly ulong Offset;
    public readonly int Whence;
    private readonly uint _padding;
}

[StructLayout(LayoutKind.Sequential)]
public readonly struct FuseCopyFileRangeIn
{
    public readonly ulong FhIn;
    public readonly ulong OffIn;
    public readonly ulong NodeIdOut;
    public readonly ulong FhOut;
    public readonly ulong OffOut;
    public readonly ulong Length;
    public readonly ulong Flags;
}
