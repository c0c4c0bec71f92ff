namespace Nydus.Actors.Storage.Compression;

/// <summary>Chunk compression, numbered as in the RAFS v6 blob table (<c>compression_algo</c>).</summary>
public enum CompressionAlgorithm
{
    None = 0,
    Lz4Block = 1,
    Gzip = 2,
    Zstd = 3,
}
