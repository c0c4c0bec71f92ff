namespace Nydus.Actors.Rafs.Layout.V5;

/// <summary>
/// One 128-byte v5 inode record plus the variable parts that follow it (name, symlink target, xattr area,
/// chunk records), decoded with bounds checks (rafs/src/metadata/layout/v5.rs <c>RafsV5Inode</c>).
/// </summary>
internal readonly struct RafsV5Inode
{
    public const int RecordSize = 128;
    public const int ChunkRecordSize = 80;
    public const ulong FlagSymlink = 0x1;
    public const ulong FlagXattr = 0x4;
    public const ulong FlagHasHole = 0x8;
    public const int MaxNameSize = 255;

    public RafsV5Inode(ImageData data, long offset)
    {
        ReadOnlySpan<byte> r = data.Span(offset, RecordSize, "inode record");
        Offset = offset;
        Parent = BitConverter.ToUInt64(r.Slice(32));
        Ino = BitConverter.ToUInt64(r.Slice(40));
        Uid = BitConverter.ToUInt32(r.Slice(48));
        Gid = BitConverter.ToUInt32(r.Slice(52));
        Mode = BitConverter.ToUInt32(r.Slice(60));
        Size = BitConverter.ToUInt64(r.Slice(64));
        Blocks = BitConverter.ToUInt64(r.Slice(72));
        Flags = BitConverter.ToUInt64(r.Slice(80));
        NLink = BitConverter.ToUInt32(r.Slice(88));
        ChildIndex = BitConverter.ToUInt32(r.Slice(92));
        ChildCount = BitConverter.ToUInt32(r.Slice(96));
        NameSize = BitConverter.ToUInt16(r.Slice(100));
        SymlinkSize = BitConverter.ToUInt16(r.Slice(102));
        Rdev = BitConverter.ToUInt32(r.Slice(104));
        MtimeNanoseconds = BitConverter.ToUInt32(r.Slice(108));
        Mtime = BitConverter.ToUInt64(r.Slice(112));

        if (NameSize == 0 || NameSize > MaxNameSize)
        {
            data.Throw(RafsErrorKind.InvalidInode, $"inode at 0x{offset:x} has invalid i_name_size {NameSize}");
        }

        NameOffset = offset + RecordSize;
        SymlinkOffset = NameOffset + Align8(NameSize);
        long xattrOffset = SymlinkOffset + Align8(SymlinkSize);
        XattrOffset = xattrOffset;
        XattrSize = 0;
        if ((Flags & FlagXattr) != 0)
        {
            ulong size = data.U64(xattrOffset, "xattr area size");
            if (size > (ulong)data.Length)
            {
                data.Throw(RafsErrorKind.InvalidInode, $"inode at 0x{offset:x} has xattr area size {size} past the bootstrap end");
            }

            XattrSize = (long)size;
            ChunkOffset = xattrOffset + 8 + Align8(XattrSize);
        }
        else
        {
            ChunkOffset = xattrOffset;
        }
    }

    public long Offset { get; }

    public ulong Parent { get; }

    public ulong Ino { get; }

    public uint Uid { get; }

    public uint Gid { get; }

    public uint Mode { get; }

    public ulong Size { get; }

    public ulong Blocks { get; }

    public ulong Flags { get; }

    public uint NLink { get; }

    public uint ChildIndex { get; }

    public uint ChildCount { get; }

    public ushort NameSize { get; }

    public ushort SymlinkSize { get; }

    public uint Rdev { get; }

    public uint MtimeNanoseconds { get; }

    public ulong Mtime { get; }

    public long NameOffset { get; }

    public long SymlinkOffset { get; }

    /// <summary>Offset of the u64 xattr size (when the XATTR flag is set).</summary>
    public long XattrOffset { get; }

    public long XattrSize { get; }

    public long ChunkOffset { get; }

    public uint Type => Mode & 0xF000;

    public bool IsDirectory => Type == 0x4000;

    public bool IsRegular => Type == 0x8000;

    public bool IsSymlink => Type == 0xA000;

    /// <summary>For regular files i_child_count is the number of chunk records.</summary>
    public uint ChunkCount() => IsRegular ? ChildCount : 0;

    public ReadOnlySpan<byte> Name(ImageData data) => data.Span(NameOffset, NameSize, "inode name");

    private static long Align8(long value) => (value + 7) & ~7L;
}
