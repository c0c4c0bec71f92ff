using Nydus.Actors.Storage.Compression;
using Nydus.Actors.Storage.Digest;

namespace Nydus.Actors.Rafs.Layout;

/// <summary>RAFS superblock flags (v5 <c>s_flags</c>, v6 extended superblock flags); rafs/src/metadata/mod.rs.</summary>
[Flags]
internal enum RafsSuperFlags : ulong
{
    CompressionNone = 0x1,
    CompressionLz4 = 0x2,
    HashBlake3 = 0x4,
    HashSha256 = 0x8,
    ExplicitUidGid = 0x10,
    HasXattr = 0x20,
    CompressionGzip = 0x40,
    CompressionZstd = 0x80,
    InlinedChunkDigest = 0x100,
    TarfsMode = 0x200,
    EncryptionNone = 0x0100_0000,
    EncryptionAes128Xts = 0x0200_0000,
    PreservedCompat = 0xFC00_0000,

    Known = CompressionNone | CompressionLz4 | HashBlake3 | HashSha256 | ExplicitUidGid | HasXattr | CompressionGzip
        | CompressionZstd | InlinedChunkDigest | TarfsMode | EncryptionNone | EncryptionAes128Xts | PreservedCompat,
}

internal static class RafsSuperFlagsExtensions
{
    /// <summary>Upstream's rule: the first of NONE, LZ4, GZIP, ZSTD that is set; LZ4 when none is.</summary>
    public static CompressionAlgorithm Compression(this RafsSuperFlags flags) =>
        (flags & RafsSuperFlags.CompressionNone) != 0 ? CompressionAlgorithm.None
        : (flags & RafsSuperFlags.CompressionLz4) != 0 ? CompressionAlgorithm.Lz4Block
        : (flags & RafsSuperFlags.CompressionGzip) != 0 ? CompressionAlgorithm.Gzip
        : (flags & RafsSuperFlags.CompressionZstd) != 0 ? CompressionAlgorithm.Zstd
        : CompressionAlgorithm.Lz4Block;

    /// <summary>BLAKE3 if set, else SHA-256 if set, else BLAKE3.</summary>
    public static DigestAlgorithm Digest(this RafsSuperFlags flags) =>
        (flags & RafsSuperFlags.HashBlake3) == 0 && (flags & RafsSuperFlags.HashSha256) != 0
            ? DigestAlgorithm.Sha256
            : DigestAlgorithm.Blake3;
}
