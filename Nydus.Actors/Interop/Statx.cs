using System.Runtime.InteropServices;

namespace Nydus.Actors.Interop;

/// <summary>
/// <c>struct statx</c> from linux/stat.h. Unlike <c>struct stat</c> its layout is the same on every
/// architecture, which is why the passthrough filesystem uses statx(2) instead of fstatat(2).
/// </summary>
[StructLayout(LayoutKind.Explicit, Size = 256)]
public struct Statx
{
    [FieldOffset(0)] public uint Mask;
    [FieldOffset(4)] public uint BlockSize;
    [FieldOffset(8)] public ulong Attributes;
    [FieldOffset(16)] public uint LinkCount;
    [FieldOffset(20)] public uint Uid;
    [FieldOffset(24)] public uint Gid;
    [FieldOffset(28)] public ushort Mode;
    [FieldOffset(32)] public ulong Inode;
    [FieldOffset(40)] public ulong Size;
    [FieldOffset(48)] public ulong Blocks;
    [FieldOffset(56)] public ulong AttributesMask;
    [FieldOffset(64)] public StatxTimestamp AccessTime;
    [FieldOffset(80)] public StatxTimestamp BirthTime;
    [FieldOffset(96)] public StatxTimestamp ChangeTime;
    [FieldOffset(112)] public StatxTimestamp ModifyTime;
    [FieldOffset(128)] public uint RdevMajor;
    [FieldOffset(132)] public uint RdevMinor;
    [FieldOffset(136)] public uint DevMajor;
    [FieldOffset(140)] public uint DevMinor;

    /// <summary>The device as one number, for keying inodes by (device, inode).</summary>
    public readonly ulong Device => ((ulong)DevMajor << 32) | DevMinor;

    /// <summary>File type bits of <see cref="Mode"/> (S_IFMT).</summary>
    public readonly uint FileType => Mode & FileModes.S_IFMT;
}
