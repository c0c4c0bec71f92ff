using System.Buffers.Binary;
using System.Numerics;

namespace Nydus.Actors.Rafs.Layout.V6;

/// <summary>The 256-byte RAFS v6 extended superblock at offset 1152 (rafs/src/metadata/layout/v6.rs).</summary>
internal sealed class RafsV6SuperBlockExt
{
    public const int Offset = 1152;
    public const int Size = 256;

    private RafsV6SuperBlockExt()
    {
    }

    public RafsSuperFlags Flags { get; private init; }

    public long BlobTableOffset { get; private init; }

    public uint BlobTableSize { get; private init; }

    public uint ChunkSize { get; private init; }

    public long ChunkTableOffset { get; private init; }

    public long ChunkTableSize { get; private init; }

    /// <summary>s_prefetch_table_offset: u32 nids; 0 = none.</summary>
    public long PrefetchTableOffset { get; private init; }

    /// <summary>s_prefetch_table_size in bytes (entries = size / 4).</summary>
    public uint PrefetchTableSize { get; private init; }

    public static RafsV6SuperBlockExt Load(ImageData data)
    {
        ReadOnlySpan<byte> s = data.Span(Offset, Size, "RAFS v6 extended superblock");
        var ext = new RafsV6SuperBlockExt
        {
            Flags = (RafsSuperFlags)BinaryPrimitives.ReadUInt64LittleEndian(s),
            BlobTableOffset = (long)Math.Min(BinaryPrimitives.ReadUInt64LittleEndian(s.Slice(8)), long.MaxValue),
            BlobTableSize = BinaryPrimitives.ReadUInt32LittleEndian(s.Slice(16)),
            ChunkSize = BinaryPrimitives.ReadUInt32LittleEndian(s.Slice(20)),
            ChunkTableOffset = (long)Math.Min(BinaryPrimitives.ReadUInt64LittleEndian(s.Slice(24)), long.MaxValue),
            ChunkTableSize = (long)Math.Min(BinaryPrimitives.ReadUInt64LittleEndian(s.Slice(32)), long.MaxValue),
            PrefetchTableOffset = (long)Math.Min(BinaryPrimitives.ReadUInt64LittleEndian(s.Slice(40)), long.MaxValue),
            PrefetchTableSize = BinaryPrimitives.ReadUInt32LittleEndian(s.Slice(48)),
        };
        ext.Validate(data);
        return ext;
    }

    private void Validate(ImageData data)
    {
        const RafsSuperFlags compression = RafsSuperFlags.CompressionNone | RafsSuperFlags.CompressionLz4
            | RafsSuperFlags.CompressionGzip | RafsSuperFlags.CompressionZstd;
        const RafsSuperFlags hash = RafsSuperFlags.HashBlake3 | RafsSuperFlags.HashSha256;
        if ((Flags & ~RafsSuperFlags.Known) != 0 || BitOperations.PopCount((ulong)(Flags & compression)) != 1
            || BitOperations.PopCount((ulong)(Flags & hash)) != 1)
        {
            data.Throw(RafsErrorKind.InvalidSuperBlock,
                $"invalid RAFS v6 flags 0x{(ulong)Flags:x} (need exactly one compression and one hash bit)");
        }

        if (ChunkSize < 4096 || ChunkSize > 16 << 20 || !BitOperations.IsPow2(ChunkSize))
        {
            data.Throw(RafsErrorKind.InvalidSuperBlock, $"invalid RAFS v6 chunk size 0x{ChunkSize:x}");
        }

        if (BlobTableSize % RafsV6BlobEntry.Size != 0 || BlobTableOffset < 4096 && BlobTableSize > 0)
        {
            data.Throw(RafsErrorKind.InvalidSuperBlock,
                $"invalid RAFS v6 blob table (offset 0x{BlobTableOffset:x}, size {BlobTableSize})");
        }

        data.Check(BlobTableOffset, BlobTableSize, "RAFS v6 blob table");
        if (ChunkTableSize % 80 != 0)
        {
            data.Throw(RafsErrorKind.InvalidSuperBlock, $"RAFS v6 chunk table size {ChunkTableSize} is not a multiple of 80");
        }

        if (ChunkTableSize > 0)
        {
            data.Check(ChunkTableOffset, ChunkTableSize, "RAFS v6 chunk table");
        }

        if (PrefetchTableOffset > 0 && PrefetchTableSize > 0)
        {
            data.Check(PrefetchTableOffset, PrefetchTableSize, "RAFS v6 prefetch table");
        }
    }
}
