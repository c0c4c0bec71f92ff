using System.Buffers.Binary;

namespace Nydus.Actors.Rafs.Layout.V6;

/// <summary>
/// A compact (32-byte) or extended (64-byte) EROFS inode, decoded with bounds checks
/// (erofs_fs.h <c>erofs_inode_compact</c> / <c>erofs_inode_extended</c>).
/// </summary>
internal readonly struct ErofsInode
{
    public const int SlotSize = 32;
    public const int LayoutFlatPlain = 0;
    public const int LayoutCompressedFull = 1;
    public const int LayoutFlatInline = 2;
    public const int LayoutCompressedCompact = 3;
    public const int LayoutChunkBased = 4;

    public ErofsInode(ImageData data, ulong nid, long offset)
    {
        ReadOnlySpan<byte> c = data.Span(offset, SlotSize, "inode");
        ushort format = BinaryPrimitives.ReadUInt16LittleEndian(c);
        if ((format >> 4) != 0 || ((format >> 1) & 7) > LayoutChunkBased)
        {
            throw new RafsException(RafsErrorKind.InvalidInode,
                $"inode nid {nid} at 0x{offset:x} has invalid i_format 0x{format:x} in {data.Path}");
        }

        Nid = nid;
        Offset = offset;
        Extended = (format & 1) != 0;
        Layout = (format >> 1) & 7;
        XattrCount = BinaryPrimitives.ReadUInt16LittleEndian(c.Slice(2));
        Mode = BinaryPrimitives.ReadUInt16LittleEndian(c.Slice(4));
        if (Extended)
        {
            ReadOnlySpan<byte> e = data.Span(offset, 64, "extended inode");
            Size = BinaryPrimitives.ReadUInt64LittleEndian(e.Slice(8));
            U = BinaryPrimitives.ReadUInt32LittleEndian(e.Slice(16));
            Uid = BinaryPrimitives.ReadUInt32LittleEndian(e.Slice(24));
            Gid = BinaryPrimitives.ReadUInt32LittleEndian(e.Slice(28));
            Mtime = BinaryPrimitives.ReadUInt64LittleEndian(e.Slice(32));
            MtimeNanoseconds = BinaryPrimitives.ReadUInt32LittleEndian(e.Slice(40));
            NLink = BinaryPrimitives.ReadUInt32LittleEndian(e.Slice(44));
            HasMtime = true;
        }
        else
        {
            NLink = BinaryPrimitives.ReadUInt16LittleEndian(c.Slice(6));
            Size = BinaryPrimitives.ReadUInt32LittleEndian(c.Slice(8));
            U = BinaryPrimitives.ReadUInt32LittleEndian(c.Slice(16));
            Uid = BinaryPrimitives.ReadUInt16LittleEndian(c.Slice(24));
            Gid = BinaryPrimitives.ReadUInt16LittleEndian(c.Slice(26));
            Mtime = 0;
            MtimeNanoseconds = 0;
            HasMtime = false;
        }

        if (Size > (ulong)long.MaxValue / 2)
        {
            throw new RafsException(RafsErrorKind.InvalidInode, $"inode nid {nid} has impossible size {Size} in {data.Path}");
        }

        XattrSize = XattrCount == 0 ? 0 : 12 + 4 * (XattrCount - 1);
        TailOffset = offset + (Extended ? 64 : 32) + XattrSize;
    }

    public ulong Nid { get; }

    public long Offset { get; }

    public bool Extended { get; }

    public int Layout { get; }

    public ushort XattrCount { get; }

    public ushort Mode { get; }

    public ulong Size { get; }

    /// <summary>i_u: raw block address, chunk format, rdev or compressed block count depending on type/layout.</summary>
    public uint U { get; }

    public uint Uid { get; }

    public uint Gid { get; }

    public ulong Mtime { get; }

    public uint MtimeNanoseconds { get; }

    /// <summary>Compact inodes have no mtime; the superblock build time stands in.</summary>
    public bool HasMtime { get; }

    public uint NLink { get; }

    public int XattrSize { get; }

    /// <summary>Where inline data (FLAT_INLINE tail) or chunk indexes begin: after the inode and its xattrs.</summary>
    public long TailOffset { get; }

    public int Type => Mode & 0xF000;

    public bool IsDirectory => Type == 0x4000;

    public bool IsRegular => Type == 0x8000;

    public bool IsSymlink => Type == 0xA000;

    public bool IsDevice => Type == 0x2000 || Type == 0x6000;

    public bool IsCompressed => Layout == LayoutCompressedFull || Layout == LayoutCompressedCompact;
}
