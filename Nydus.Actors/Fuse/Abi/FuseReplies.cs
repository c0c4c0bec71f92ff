using System.Runtime.InteropServices;

namespace Nydus.Actors.Fuse.Abi;

// Fixed-size reply bodies written after fuse_out_header, and the notification bodies.

[StructLayout(LayoutKind.Sequential)]
public struct FuseInitOut
{
    public uint Major;
    public uint Minor;
    public uint MaxReadahead;
    public uint Flags;
    public ushort MaxBackground;
    public ushort CongestionThreshold;
    public uint MaxWrite;
    public uint TimeGran;
    public ushort MaxPages;
    public ushort MapAlignment;
    public uint Flags2;
    /// <summary>
    /// With FUSE_PASSTHROUGH (7.40): how deeply the backing files' file systems may be stacked below this mount
    /// (1: a backing file must not be on a stacked file system such as overlayfs). Passthrough needs it above 0.
    /// </summary>
    public uint MaxStackDepth;
    private uint _unused1, _unused2, _unused3, _unused4, _unused5, _unused6;

    /// <summary>Reply size understood by kernels speaking a minor below 23.</summary>
    public const int Compat22Size = 24;
}

[StructLayout(LayoutKind.Sequential)]
public struct FuseOpenOut
{
    public ulong Fh;
    public FuseOpenFlags OpenFlags;

    /// <summary>With FOPEN_PASSTHROUGH: the id FUSE_DEV_IOC_BACKING_OPEN gave for the backing file (7.40).</summary>
    public int BackingId;
}

[StructLayout(LayoutKind.Sequential)]
public struct FuseWriteOut
{
    public uint Size;
    private uint _padding;
}

[StructLayout(LayoutKind.Sequential)]
public struct FuseStatFsOut
{
    public FuseKstatfs St;
}

[StructLayout(LayoutKind.Sequential)]
public struct FuseGetXattrOut
{
    public uint Size;
    private uint _padding;
}

[StructLayout(LayoutKind.Sequential)]
public struct FuseLseekOut
{
    public ulong Offset;
}

/// <summary>struct fuse_dirent without its name: 24 bytes, the name follows, padded to 8.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct FuseDirent
{
    public ulong Ino;
    public ulong Off;
    public uint NameLength;
    public uint Type;
}

/// <summary>struct fuse_direntplus without its name: 152 bytes.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct FuseDirentPlus
{
    public FuseEntryOut EntryOut;
    public FuseDirent Dirent;
}

[StructLayout(LayoutKind.Sequential)]
public struct FuseNotifyInvalInodeOut
{
    public ulong Ino;
    public long Offset;
    public long Length;
}

[StructLayout(LayoutKind.Sequential)]
public struct FuseNotifyInvalEntryOut
{
    public ulong Parent;
    public uint NameLength;
    public uint Flags;
}
