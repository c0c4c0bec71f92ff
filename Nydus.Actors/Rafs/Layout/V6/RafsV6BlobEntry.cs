using System.Buffers.Binary;
using System.Text;
using Nydus.Actors.Storage.Compression;
using Nydus.Actors.Storage.Digest;

namespace Nydus.Actors.Rafs.Layout.V6;

/// <summary>One 256-byte RAFS v6 blob table entry (rafs/src/metadata/layout/v6.rs <c>RafsV6Blob</c>).</summary>
internal sealed class RafsV6BlobEntry
{
    public const int Size = 256;
    public const uint FeatureAligned = 0x1;
    public const uint FeatureChunkInfoV2 = 0x4;
    public const uint FeatureZran = 0x8;
    public const uint FeatureSeparate = 0x10;
    public const uint FeatureTarfs = 0x40;
    public const uint FeatureBatch = 0x80;
    public const uint FeatureEncrypted = 0x100;

    private RafsV6BlobEntry()
    {
    }

    public required string BlobId { get; init; }

    public uint ChunkCount { get; private init; }

    public CompressionAlgorithm Compression { get; private init; }

    public DigestAlgorithm Digest { get; private init; }

    public uint Features { get; private init; }

    public ulong CompressedSize { get; private init; }

    /// <summary>Size of the blob's data once every chunk sits at its uncompressed offset (a 4 KiB multiple).</summary>
    public ulong UncompressedSize { get; private init; }

    public CompressionAlgorithm ChunkInfoCompression { get; private init; }

    public long ChunkInfoOffset { get; private init; }

    public long ChunkInfoCompressedSize { get; private init; }

    public long ChunkInfoUncompressedSize { get; private init; }

    public bool ChunkInfoV2 => (Features & FeatureChunkInfoV2) != 0;

    public static RafsV6BlobEntry Load(ImageData data, long offset, int index, uint chunkSize)
    {
        ReadOnlySpan<byte> e = data.Span(offset, Size, "RAFS v6 blob table entry");
        ReadOnlySpan<byte> id = e.Slice(0, 64);
        int nul = id.IndexOf((byte)0);
        if (nul >= 0)
        {
            id = id.Slice(0, nul);
        }

        if (id.Length == 0 || id.ContainsAnyExcept(IdBytes))
        {
            data.Throw(RafsErrorKind.InvalidSuperBlock, $"RAFS v6 blob entry {index} has an invalid blob id");
        }

        uint storedIndex = BinaryPrimitives.ReadUInt32LittleEndian(e.Slice(64));
        uint storedChunkSize = BinaryPrimitives.ReadUInt32LittleEndian(e.Slice(68));
        uint compression = BinaryPrimitives.ReadUInt32LittleEndian(e.Slice(76));
        uint digest = BinaryPrimitives.ReadUInt32LittleEndian(e.Slice(80));
        uint ciCompression = BinaryPrimitives.ReadUInt32LittleEndian(e.Slice(108));
        if (storedIndex != index)
        {
            data.Throw(RafsErrorKind.InvalidSuperBlock, $"RAFS v6 blob entry {index} has blob_index {storedIndex}");
        }

        if (storedChunkSize != chunkSize && storedChunkSize != 0)
        {
            data.Throw(RafsErrorKind.InvalidSuperBlock,
                $"RAFS v6 blob entry {index} has chunk_size 0x{storedChunkSize:x}, superblock says 0x{chunkSize:x}");
        }

        if (compression > 3 || ciCompression > 3 || digest > 1)
        {
            data.Throw(RafsErrorKind.InvalidSuperBlock,
                $"RAFS v6 blob entry {index} has unknown compression {compression}/{ciCompression} or digest {digest}");
        }

        return new RafsV6BlobEntry
        {
            BlobId = Encoding.ASCII.GetString(id),
            ChunkCount = BinaryPrimitives.ReadUInt32LittleEndian(e.Slice(72)),
            Compression = (CompressionAlgorithm)compression,
            Digest = (DigestAlgorithm)digest,
            Features = BinaryPrimitives.ReadUInt32LittleEndian(e.Slice(84)),
            CompressedSize = BinaryPrimitives.ReadUInt64LittleEndian(e.Slice(88)),
            UncompressedSize = BinaryPrimitives.ReadUInt64LittleEndian(e.Slice(96)),
            ChunkInfoCompression = (CompressionAlgorithm)ciCompression,
            ChunkInfoOffset = (long)Math.Min(BinaryPrimitives.ReadUInt64LittleEndian(e.Slice(112)), long.MaxValue / 4),
            ChunkInfoCompressedSize = (long)Math.Min(BinaryPrimitives.ReadUInt64LittleEndian(e.Slice(120)), long.MaxValue / 4),
            ChunkInfoUncompressedSize = (long)Math.Min(BinaryPrimitives.ReadUInt64LittleEndian(e.Slice(128)), long.MaxValue / 4),
        };
    }

    private static readonly System.Buffers.SearchValues<byte> IdBytes =
        System.Buffers.SearchValues.Create("0123456789abcdefABCDEFghijklmnopqrstuvwxyzGHIJKLMNOPQRSTUVWXYZ-_."u8);
}
