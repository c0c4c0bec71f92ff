using System.Numerics;

namespace Nydus.Actors.Rafs.Layout.V5;

/// <summary>The 8192-byte RAFS v5 superblock at offset 0 (rafs/src/metadata/layout/v5.rs).</summary>
internal sealed class RafsV5SuperBlock
{
    public const uint Magic = 0x5241_4653;
    public const uint Version = 0x500;
    public const int Size = 8192;
    public const int MinChunkSize = 4096;
    public const int MaxChunkSize = 16 << 20;

    private RafsV5SuperBlock()
    {
    }

    public uint ChunkSize { get; private init; }

    public RafsSuperFlags Flags { get; private init; }

    public ulong InodesCount { get; private init; }

    public long InodeTableOffset { get; private init; }

    public uint InodeTableEntries { get; private init; }

    public long PrefetchTableOffset { get; private init; }

    public uint PrefetchTableEntries { get; private init; }

    public long BlobTableOffset { get; private init; }

    public uint BlobTableSize { get; private init; }

    public long ExtendedBlobTableOffset { get; private init; }

    public uint ExtendedBlobTableEntries { get; private init; }

    /// <summary>Parses and validates the superblock, one exact message per check.</summary>
    public static RafsV5SuperBlock Load(ImageData data)
    {
        if (data.Length < Size)
        {
            data.Throw(RafsErrorKind.OutOfBounds,
                $"bootstrap size {data.Length} is smaller than the {Size}-byte RAFS v5 superblock");
        }

        uint version = data.U32(4, "s_fs_version");
        if (version != Version)
        {
            data.Throw(RafsErrorKind.Unsupported, $"unsupported RAFS version 0x{version:x} (expected 0x500)");
        }

        uint sbSize = data.U32(8, "s_sb_size");
        if (sbSize != Size)
        {
            data.Throw(RafsErrorKind.InvalidSuperBlock, $"invalid s_sb_size {sbSize} (expected {Size})");
        }

        var sb = new RafsV5SuperBlock
        {
            ChunkSize = data.U32(12, "s_block_size"),
            Flags = (RafsSuperFlags)data.U64(16, "s_flags"),
            InodesCount = data.U64(24, "s_inodes_count"),
            InodeTableOffset = (long)Math.Min(data.U64(32, "s_inode_table_offset"), long.MaxValue),
            PrefetchTableOffset = (long)Math.Min(data.U64(40, "s_prefetch_table_offset"), long.MaxValue),
            BlobTableOffset = (long)Math.Min(data.U64(48, "s_blob_table_offset"), long.MaxValue),
            InodeTableEntries = data.U32(56, "s_inode_table_entries"),
            PrefetchTableEntries = data.U32(60, "s_prefetch_table_entries"),
            BlobTableSize = data.U32(64, "s_blob_table_size"),
            ExtendedBlobTableEntries = data.U32(68, "s_extended_blob_table_entries"),
            ExtendedBlobTableOffset = (long)Math.Min(data.U64(72, "s_extended_blob_table_offset"), long.MaxValue),
        };
        sb.Validate(data);
        return sb;
    }

    private void Validate(ImageData data)
    {
        if (ChunkSize < MinChunkSize || ChunkSize > MaxChunkSize || !BitOperations.IsPow2(ChunkSize))
        {
            data.Throw(RafsErrorKind.InvalidSuperBlock,
                $"invalid chunk size s_block_size 0x{ChunkSize:x} (power of two in [4 KiB, 16 MiB] required)");
        }

        if ((Flags & ~RafsSuperFlags.Known) != 0)
        {
            data.Throw(RafsErrorKind.InvalidSuperBlock, $"unknown superblock flags 0x{(ulong)Flags:x}");
        }

        if (InodeTableEntries == 0)
        {
            data.Throw(RafsErrorKind.InvalidSuperBlock, "inode table is empty (s_inode_table_entries 0)");
        }

        if (InodesCount > InodeTableEntries)
        {
            data.Throw(RafsErrorKind.InvalidSuperBlock,
                $"s_inodes_count {InodesCount} exceeds s_inode_table_entries {InodeTableEntries}");
        }

        CheckTable(data, "inode table", InodeTableOffset, (long)InodeTableEntries * 4);
        CheckTable(data, "prefetch table", PrefetchTableOffset, (long)PrefetchTableEntries * 4);
        CheckTable(data, "blob table", BlobTableOffset, BlobTableSize);
        if (ExtendedBlobTableEntries > 0)
        {
            CheckTable(data, "extended blob table", ExtendedBlobTableOffset, (long)ExtendedBlobTableEntries * 64);
        }
    }

    private static void CheckTable(ImageData data, string name, long offset, long size)
    {
        if (size == 0)
        {
            return;
        }

        if (offset < Size || offset % 8 != 0)
        {
            data.Throw(RafsErrorKind.InvalidSuperBlock,
                $"{name} offset 0x{offset:x} is inside the superblock or not 8-byte aligned");
        }

        if (offset > data.Length - size)
        {
            data.Throw(RafsErrorKind.OutOfBounds,
                $"{name} offset 0x{offset:x} (+{size}) past end of bootstrap (size {data.Length})");
        }
    }
}
