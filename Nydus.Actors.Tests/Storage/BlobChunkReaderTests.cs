using System.IO.Compression;
using System.Security.Cryptography;
using K4os.Compression.LZ4;
using Nydus.Actors.Storage;
using Nydus.Actors.Storage.Backends;
using Nydus.Actors.Storage.Compression;
using Nydus.Actors.Storage.Digest;
using Nydus.Actors.Tests.Support;
using Xunit;

namespace Nydus.Actors.Tests.Storage;

public sealed class BlobChunkReaderTests
{
    private const string BlobId = "blob-under-test";

    [Fact]
    public void Adjacent_chunks_are_merged_into_one_backend_read_but_dedup_and_far_chunks_are_not()
    {
        var content = new byte[64 * 1024];
        new Random(7).NextBytes(content);
        var backend = new CountingBackend().Add(BlobId, content);
        var blob = new BlobRef(BlobId, backend, CompressionAlgorithm.None, DigestAlgorithm.Sha256);

        // Chunks at 0, 4096 (adjacent), 8192+100 (gap 100 <= 1 MiB >> 7), then 0 again (dedup), then 60000 (far).
        long[] offsets = { 0, 4096, 8192 + 100, 0, 60000 };
        var requests = new ChunkRequest[offsets.Length];
        var destination = new byte[offsets.Length * 1000];
        for (int i = 0; i < offsets.Length; i++)
        {
            requests[i] = Raw(blob, offsets[i], 1000, i * 1000, content);
        }

        BlobChunkReader.Read(requests, destination, validateDigests: true);
        Assert.Equal(3, backend.Reads);
        Assert.Equal((0L, 8192 + 100 + 1000), backend.Ranges[0]);
        for (int i = 0; i < offsets.Length; i++)
        {
            Assert.True(content.AsSpan((int)offsets[i], 1000).SequenceEqual(destination.AsSpan(i * 1000, 1000)));
        }
    }

    [Theory]
    [InlineData(CompressionAlgorithm.Lz4Block)]
    [InlineData(CompressionAlgorithm.Zstd)]
    [InlineData(CompressionAlgorithm.Gzip)]
    [InlineData(CompressionAlgorithm.None)]
    public void Compressed_chunks_decode_and_validate_and_corruption_names_blob_and_chunk(CompressionAlgorithm algorithm)
    {
        var plain = new byte[10000];
        for (int i = 0; i < plain.Length; i++)
        {
            plain[i] = (byte)(i % 251 / 7);
        }

        byte[] stored = Compress(algorithm, plain);
        var backend = new CountingBackend().Add(BlobId, stored);
        var blob = new BlobRef(BlobId, backend, algorithm, DigestAlgorithm.Blake3);
        var digest = new byte[32];
        ChunkDigester.Compute(DigestAlgorithm.Blake3, plain, digest);
        ChunkRequest request = new()
        {
            Blob = blob,
            ChunkIndex = 42,
            CompressedOffset = 0,
            CompressedSize = stored.Length,
            UncompressedSize = plain.Length,
            IsCompressed = algorithm != CompressionAlgorithm.None,
            Digest = digest,
            SliceStart = 100,
            SliceLength = 5000,
            DestinationOffset = 0,
        };
        var destination = new byte[5000];
        BlobChunkReader.Read([request], destination, validateDigests: true);
        Assert.True(plain.AsSpan(100, 5000).SequenceEqual(destination));

        stored[stored.Length / 2] ^= 0x5A;
        StorageException e = Assert.Throws<StorageException>(() => BlobChunkReader.Read([request], destination, true));
        Assert.Contains(BlobId, e.Message);
        Assert.Contains("chunk 42", e.Message);
        Assert.True(e.Kind is StorageErrorKind.DigestMismatch or StorageErrorKind.DecompressionFailed, e.Kind.ToString());
    }

    [Fact]
    public void Zstd_fixture_decompresses_to_the_toc_blob()
    {
        byte[] compressed = File.ReadAllBytes(ImageFixtures.UpstreamFile("zstd",
            "2fa78cad554b75ac91a4a125ed148d0ddeb25efa4aaa8bd80e5dc292690a4dca.zst"));
        var output = new byte[10034];
        Assert.True(ChunkDecompressor.TryDecompress(CompressionAlgorithm.Zstd, compressed, output));
        Assert.Equal("2fa78cad554b75ac91a4a125ed148d0ddeb25efa4aaa8bd80e5dc292690a4dca",
            Convert.ToHexStringLower(SHA256.HashData(output)));
        Assert.False(ChunkDecompressor.TryDecompress(CompressionAlgorithm.Zstd, compressed, new byte[10033]));
    }

    [Fact]
    public void A_slice_of_a_raw_chunk_nobody_checks_reads_only_the_slice_and_a_checked_one_reads_the_whole_chunk()
    {
        // Two 64 KiB raw chunks; the read wants 4 KiB of the first's end and 4 KiB of the second's start.
        var content = new byte[128 * 1024];
        new Random(11).NextBytes(content);
        var backend = new CountingBackend().Add(BlobId, content);
        var blob = new BlobRef(BlobId, backend, CompressionAlgorithm.None, DigestAlgorithm.Sha256);
        ChunkRequest[] Slices() =>
        [
            Raw(blob, 0, 65536, 0, content) with { SliceStart = 61440, SliceLength = 4096, DestinationOffset = 0 },
            Raw(blob, 65536, 65536, 1, content) with { SliceStart = 0, SliceLength = 4096, DestinationOffset = 4096 },
        ];
        var expected = content.AsSpan(61440, 8192).ToArray();

        // Digests not validated, no CRC: one backend read of exactly the 8 KiB wanted (the two slices are adjacent).
        var destination = new byte[8192];
        BlobChunkReader.Read(Slices(), destination, validateDigests: false);
        Assert.Equal([(61440L, 8192)], backend.Ranges);
        Assert.Equal(expected, destination);

        // Validated: the digest covers the whole chunk, so both chunks are read whole (and checked).
        backend.Ranges.Clear();
        destination = new byte[8192];
        BlobChunkReader.Read(Slices(), destination, validateDigests: true);
        Assert.Equal([(0L, 131072)], backend.Ranges);
        Assert.Equal(expected, destination);

        // A raw chunk whose stored size differs from its size is corrupt, checked or not.
        var corrupt = Raw(blob, 0, 65536, 0, content) with { UncompressedSize = 65537, SliceStart = 0, SliceLength = 4096 };
        var e = Assert.Throws<StorageException>(() => BlobChunkReader.Read([corrupt], new byte[4096], validateDigests: false));
        Assert.Contains("65537", e.Message);
    }

    [Fact]
    public void Crc32c_matches_the_standard_check_value_and_the_iscsi_vectors()
    {
        Assert.Equal(0xE3069283u, Crc32C.Compute("123456789"u8));
        // RFC 3720 B.4: 32 bytes of zeros, of ones, ascending.
        Assert.Equal(0x8A9136AAu, Crc32C.Compute(new byte[32]));
        Assert.Equal(0x62A8AB43u, Crc32C.Compute(Enumerable.Repeat((byte)0xFF, 32).ToArray()));
        Assert.Equal(0x46DD794Eu, Crc32C.Compute(Enumerable.Range(0, 32).Select(i => (byte)i).ToArray()));
    }

    [Fact]
    public void Crc32c_in_pieces_of_any_length_equals_the_bitwise_definition()
    {
        // Eight-byte steps plus a byte tail: every length and split point around the step must agree with the
        // polynomial computed bit by bit.
        static uint Bitwise(uint crc, ReadOnlySpan<byte> data)
        {
            foreach (byte b in data)
            {
                crc ^= b;
                for (int k = 0; k < 8; k++) crc = (crc & 1) != 0 ? 0x82F6_3B78u ^ (crc >> 1) : crc >> 1;
            }
            return crc;
        }
        var data = new byte[67];
        new Random(7).NextBytes(data);
        for (int length = 0; length <= data.Length; length++)
        {
            var piece = data.AsSpan(0, length);
            Assert.Equal(Bitwise(0xFFFF_FFFFu, piece), Crc32C.Update(0xFFFF_FFFFu, piece));
            for (int split = 0; split <= length; split += 3)
                Assert.Equal(Bitwise(0xFFFF_FFFFu, piece), Crc32C.Update(Crc32C.Update(0xFFFF_FFFFu, piece[..split]), piece[split..]));
        }
    }

    [Fact]
    public void Localfs_backend_finds_blobs_in_alt_dirs_and_reports_missing_and_short_blobs()
    {
        string dir = Path.Combine(Path.GetTempPath(), "nydus-localfs-" + Guid.NewGuid().ToString("N"));
        try
        {
            Directory.CreateDirectory(Path.Combine(dir, "main"));
            Directory.CreateDirectory(Path.Combine(dir, "alt"));
            File.WriteAllBytes(Path.Combine(dir, "main", "b1"), Array.Empty<byte>());
            File.WriteAllBytes(Path.Combine(dir, "alt", "b1"), [1, 2, 3, 4]);
            using var backend = LocalFsBackend.ForDirectory(Path.Combine(dir, "main"), Path.Combine(dir, "alt"));
            var buffer = new byte[2];
            backend.Read("b1", 2, buffer);
            Assert.Equal(new byte[] { 3, 4 }, buffer);

            StorageException missing = Assert.Throws<StorageException>(() => backend.Read("nope", 0, buffer));
            Assert.Equal(StorageErrorKind.BlobNotFound, missing.Kind);
            Assert.Contains("nope", missing.Message);
            StorageException escape = Assert.Throws<StorageException>(() => backend.Read("../alt/b1", 0, buffer));
            Assert.Equal(StorageErrorKind.BlobNotFound, escape.Kind);
            StorageException shortBlob = Assert.Throws<StorageException>(() => backend.Read("b1", 3, buffer));
            Assert.Equal(StorageErrorKind.BlobTooShort, shortBlob.Kind);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static ChunkRequest Raw(BlobRef blob, long offset, int length, int destinationOffset, byte[] content)
    {
        var digest = new byte[32];
        ChunkDigester.Compute(DigestAlgorithm.Sha256, content.AsSpan((int)offset, length), digest);
        return new ChunkRequest
        {
            Blob = blob,
            ChunkIndex = (uint)destinationOffset,
            CompressedOffset = offset,
            CompressedSize = length,
            UncompressedSize = length,
            IsCompressed = false,
            Digest = digest,
            SliceStart = 0,
            SliceLength = length,
            DestinationOffset = destinationOffset,
        };
    }

    private static byte[] Compress(CompressionAlgorithm algorithm, byte[] plain)
    {
        switch (algorithm)
        {
            case CompressionAlgorithm.Lz4Block:
                var target = new byte[LZ4Codec.MaximumOutputSize(plain.Length)];
                int n = LZ4Codec.Encode(plain, target);
                return target.AsSpan(0, n).ToArray();
            case CompressionAlgorithm.Zstd:
                using (var compressor = new ZstdSharp.Compressor())
                {
                    return compressor.Wrap(plain).ToArray();
                }

            case CompressionAlgorithm.Gzip:
                using (var output = new MemoryStream())
                {
                    using (var gzip = new GZipStream(output, CompressionLevel.Optimal, leaveOpen: true))
                    {
                        gzip.Write(plain);
                    }

                    return output.ToArray();
                }

            default:
                return (byte[])plain.Clone();
        }
    }
}
