namespace Nydus.Actors.Storage;

/// <summary>
/// One chunk a read needs: where its bytes are in a blob, how to check them, and which part of the
/// decompressed chunk goes where in the caller's buffer.
/// </summary>
public readonly struct ChunkRequest
{
    public required BlobRef Blob { get; init; }

    /// <summary>Chunk index inside its blob; only used to name the chunk in errors.</summary>
    public required uint ChunkIndex { get; init; }

    public required long CompressedOffset { get; init; }

    public required int CompressedSize { get; init; }

    public required int UncompressedSize { get; init; }

    /// <summary>False when the chunk is stored raw even though the blob has a compressor.</summary>
    public required bool IsCompressed { get; init; }

    /// <summary>Expected digest of the uncompressed chunk (32 bytes), or empty when the image has none.</summary>
    public ReadOnlyMemory<byte> Digest { get; init; }

    /// <summary>Expected CRC32C of the uncompressed chunk, checked whenever <see cref="HasCrc32"/> is set.</summary>
    public uint Crc32 { get; init; }

    public bool HasCrc32 { get; init; }

    /// <summary>First byte of the decompressed chunk the caller wants.</summary>
    public required int SliceStart { get; init; }

    public required int SliceLength { get; init; }

    /// <summary>Where the slice goes in the caller's destination buffer.</summary>
    public required int DestinationOffset { get; init; }
}
