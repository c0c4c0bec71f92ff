using System.Security.Cryptography;

namespace Nydus.Actors.Storage.Digest;

/// <summary>Computes the 32-byte chunk digests RAFS stores (BLAKE3-256 or SHA-256 of the uncompressed bytes).</summary>
public static class ChunkDigester
{
    public const int DigestSize = 32;

    public static void Compute(DigestAlgorithm algorithm, ReadOnlySpan<byte> data, Span<byte> digest)
    {
        if (algorithm == DigestAlgorithm.Sha256)
        {
            SHA256.HashData(data, digest);
        }
        else
        {
            Blake3.Hasher.Hash(data, digest.Slice(0, DigestSize));
        }
    }

    /// <summary>True when the digest of <paramref name="data"/> equals <paramref name="expected"/>.</summary>
    public static bool Matches(DigestAlgorithm algorithm, ReadOnlySpan<byte> data, ReadOnlySpan<byte> expected)
    {
        Span<byte> actual = stackalloc byte[DigestSize];
        Compute(algorithm, data, actual);
        return actual.SequenceEqual(expected);
    }
}
