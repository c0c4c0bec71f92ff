using System.Buffers.Binary;
using Nydus.Actors.Storage.Compression;

namespace Nydus.Actors.Storage.Meta;

/// <summary>
/// The chunk-info array of a RAFS v6 blob ("blob meta", storage/src/meta): 16-byte v1 or 24-byte v2 entries,
/// possibly compressed, followed in the blob by a 4 KiB header whose magics and counts must match the blob table.
/// </summary>
public sealed class BlobChunkInfoArray
{
    public const uint HeaderMagic = 0xB10B_B10B;
    public const int HeaderSize = 4096;

    /// <summary>Upper bound on the uncompressed array (2^24 chunks of 24 bytes plus contexts).</summary>
    private const long MaxUncompressedSize = (24L << 24) + (1 << 20);

    private readonly byte[] _entries;
    private readonly bool _v2;

    private BlobChunkInfoArray(byte[] entries, uint count, bool v2)
    {
        _entries = entries;
        Count = count;
        _v2 = v2;
    }

    public uint Count { get; }

    /// <summary>Reads and checks the array from the blob itself (compressed array then header).</summary>
    public static BlobChunkInfoArray Load(BlobRef blob, long offset, long compressedSize, long uncompressedSize,
        CompressionAlgorithm compression, uint chunkCount, bool v2)
    {
        int entrySize = v2 ? 24 : 16;
        if (compressedSize <= 0 || uncompressedSize < (long)chunkCount * entrySize || uncompressedSize > MaxUncompressedSize
            || compressedSize > MaxUncompressedSize)
        {
            throw new StorageException(StorageErrorKind.Unsupported,
                $"blob {blob.Id} has an invalid chunk-info array (compressed {compressedSize}, uncompressed " +
                $"{uncompressedSize}, {chunkCount} chunks)");
        }

        // Every chunk occupies at least one byte of the blob, which bounds what a corrupt entry can make us allocate.
        long blobSize = blob.Backend.GetBlobSize(blob.Id);
        if (chunkCount > blobSize || offset < 0 || offset > blobSize - compressedSize - HeaderSize
            || uncompressedSize != (long)chunkCount * entrySize)
        {
            throw new StorageException(StorageErrorKind.BlobTooShort,
                $"chunk-info array of blob {blob.Id} ({chunkCount} entries, {compressedSize} bytes at {offset}, " +
                $"{uncompressedSize} uncompressed) does not fit the {blobSize}-byte blob");
        }

        var raw = new byte[compressedSize + HeaderSize];
        blob.Backend.Read(blob.Id, offset, raw);
        ReadOnlySpan<byte> header = raw.AsSpan((int)compressedSize, HeaderSize);
        uint magic = BinaryPrimitives.ReadUInt32LittleEndian(header);
        uint magic2 = BinaryPrimitives.ReadUInt32LittleEndian(header.Slice(4092));
        uint entries = BinaryPrimitives.ReadUInt32LittleEndian(header.Slice(12));
        long headerOffset = BinaryPrimitives.ReadInt64LittleEndian(header.Slice(16));
        if (magic != HeaderMagic || magic2 != HeaderMagic || entries != chunkCount || headerOffset != offset)
        {
            throw new StorageException(StorageErrorKind.DigestMismatch,
                $"blob {blob.Id} has a bad blob-meta header at {offset + compressedSize} (magic 0x{magic:x}/0x{magic2:x}, " +
                $"{entries} entries, ci_offset {headerOffset}; expected {chunkCount} entries at {offset})");
        }

        var plain = new byte[uncompressedSize];
        bool ok = compression == CompressionAlgorithm.None
            ? compressedSize == uncompressedSize && raw.AsSpan(0, (int)compressedSize).TryCopyTo(plain)
            : ChunkDecompressor.TryDecompress(compression, raw.AsSpan(0, (int)compressedSize), plain);
        if (!ok)
        {
            throw new StorageException(StorageErrorKind.DecompressionFailed,
                $"chunk-info array of blob {blob.Id} at {offset} does not {compression}-decompress to {uncompressedSize} bytes");
        }

        return new BlobChunkInfoArray(plain, chunkCount, v2);
    }

    public bool TryGet(uint index, out BlobChunkInfo info)
    {
        if (index >= Count)
        {
            info = default;
            return false;
        }

        if (!_v2)
        {
            ReadOnlySpan<byte> e = _entries.AsSpan((int)index * 16, 16);
            ulong u = BinaryPrimitives.ReadUInt64LittleEndian(e);
            ulong c = BinaryPrimitives.ReadUInt64LittleEndian(e.Slice(8));
            int usize = (int)(((u >> 44) & 0xFFFFF) | (((u >> 8) & 0xF) << 20)) + 1;
            int csize = (int)(((c >> 44) & 0xFFFFF) | (((c >> 40) & 0xF) << 20)) + 1;
            info = new BlobChunkInfo((long)(c & 0xFF_FFFF_FFFF), csize, (long)(u & 0x0FFF_FFFF_F000), usize,
                csize != usize, false, 0, false);
            return true;
        }

        ReadOnlySpan<byte> v = _entries.AsSpan((int)index * 24, 24);
        ulong uv = BinaryPrimitives.ReadUInt64LittleEndian(v);
        ulong cv = BinaryPrimitives.ReadUInt64LittleEndian(v.Slice(8));
        ulong data = BinaryPrimitives.ReadUInt64LittleEndian(v.Slice(16));
        byte flags = (byte)(uv >> 56);
        const byte compressedFlag = 0x1, zranBatchEncrypted = 0x2 | 0x4 | 0x8, crcFlag = 0x10;
        info = new BlobChunkInfo((long)(cv & 0xFF_FFFF_FFFF), (int)(cv >> 40), (long)((uv & 0xFFFF_FFFF) << 12),
            (int)((uv >> 32) & 0xFF_FFFF) + 1, (flags & compressedFlag) != 0, (flags & crcFlag) != 0, (uint)data,
            (flags & zranBatchEncrypted) != 0);
        return true;
    }
}
