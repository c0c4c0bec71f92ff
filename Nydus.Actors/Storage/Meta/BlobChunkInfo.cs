namespace Nydus.Actors.Storage.Meta;

/// <summary>Where one chunk of a RAFS v6 blob is stored and how big it is once decompressed.</summary>
public readonly record struct BlobChunkInfo(
    long CompressedOffset,
    int CompressedSize,
    long UncompressedOffset,
    int UncompressedSize,
    bool IsCompressed,
    bool HasCrc32,
    uint Crc32,
    bool IsUnsupported);
