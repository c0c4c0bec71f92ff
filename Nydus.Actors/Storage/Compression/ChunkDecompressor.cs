using System.IO.Compression;
using K4os.Compression.LZ4;
using ZstdSharp;

namespace Nydus.Actors.Storage.Compression;

/// <summary>
/// Decompresses one chunk into a buffer of exactly its recorded uncompressed size. Chunks are compressed
/// independently, so no state is shared between calls (the zstd decoder is cached per thread because it is
/// expensive to create and not thread-safe).
/// </summary>
public static class ChunkDecompressor
{
    [ThreadStatic]
    private static Decompressor? t_zstd;

    /// <summary>
    /// Decompresses <paramref name="source"/> into all of <paramref name="destination"/>. Returns false when the
    /// data is corrupt or does not produce exactly <c>destination.Length</c> bytes.
    /// </summary>
    public static bool TryDecompress(CompressionAlgorithm algorithm, ReadOnlySpan<byte> source, Span<byte> destination)
    {
        try
        {
            switch (algorithm)
            {
                case CompressionAlgorithm.None:
                    if (source.Length != destination.Length)
                    {
                        return false;
                    }

                    source.CopyTo(destination);
                    return true;
                case CompressionAlgorithm.Lz4Block:
                    return LZ4Codec.Decode(source, destination) == destination.Length;
                case CompressionAlgorithm.Zstd:
                    t_zstd ??= new Decompressor();
                    return t_zstd.TryUnwrap(source, destination, out int written) && written == destination.Length;
                case CompressionAlgorithm.Gzip:
                    return TryGunzip(source, destination);
                default:
                    return false;
            }
        }
        catch (Exception e) when (e is ZstdException or InvalidDataException or ArgumentException or InvalidOperationException)
        {
            // Corrupt input surfaces as exceptions from some decoders; callers want a yes/no answer.
            if (algorithm == CompressionAlgorithm.Zstd)
            {
                // A decoder that threw may hold half-decoded state; start the next chunk from a fresh one.
                t_zstd?.Dispose();
                t_zstd = null;
            }

            return false;
        }
    }

    private static unsafe bool TryGunzip(ReadOnlySpan<byte> source, Span<byte> destination)
    {
        // Gzip chunks only appear in legacy stargz images, so an UnmanagedMemoryStream view is good enough.
        fixed (byte* p = source)
        {
            using var input = new UnmanagedMemoryStream(p, source.Length);
            using var gzip = new GZipStream(input, CompressionMode.Decompress);
            int done = 0;
            while (done < destination.Length)
            {
                int n = gzip.Read(destination.Slice(done));
                if (n == 0)
                {
                    return false;
                }

                done += n;
            }

            Span<byte> probe = stackalloc byte[1];
            return gzip.Read(probe) == 0;
        }
    }
}
