using System.Buffers;
using System.Diagnostics.CodeAnalysis;
using Nydus.Actors.Storage.Compression;
using Nydus.Actors.Storage.Digest;

namespace Nydus.Actors.Storage;

/// <summary>
/// Fetches, decompresses and checks the chunks of one read. Chunks that lie next to each other in the same
/// blob are fetched with one backend read, as upstream's file cache does (storage/src/cache/mod.rs,
/// <c>BlobIoMergeState</c>): a chunk joins the current range when it starts at or after the range end, the gap
/// is at most <c>mergeSize &gt;&gt; 7</c> bytes and the range is still below <c>mergeSize</c>.
/// Stateless and thread-safe; every transient buffer comes from <see cref="ArrayPool{T}.Shared"/>.
/// </summary>
public static class BlobChunkReader
{
    public const int DefaultMergeSize = 1 << 20;

    public static void Read(ReadOnlySpan<ChunkRequest> chunks, Span<byte> destination, bool validateDigests,
        int mergeSize = DefaultMergeSize)
    {
        long maxGap = mergeSize >> 7;
        int first = 0;
        while (first < chunks.Length)
        {
            ref readonly ChunkRequest head = ref chunks[first];
            long rangeStart = StoredStart(in head, validateDigests);
            long rangeEnd = rangeStart + StoredLength(in head, validateDigests);
            int last = first;
            while (last + 1 < chunks.Length)
            {
                ref readonly ChunkRequest next = ref chunks[last + 1];
                long nextStart = StoredStart(in next, validateDigests);
                // Deduplicated chunks (e.g. two zero chunks in a row) share one blob range: next's start < end,
                // so they start a new range instead of being read twice inside one.
                bool joins = ReferenceEquals(next.Blob, head.Blob)
                    && nextStart >= rangeEnd
                    && nextStart - rangeEnd <= maxGap
                    && rangeEnd - rangeStart < mergeSize;
                if (!joins)
                {
                    break;
                }

                rangeEnd = nextStart + StoredLength(in next, validateDigests);
                last++;
            }

            ReadRange(chunks.Slice(first, last - first + 1), rangeStart, (int)(rangeEnd - rangeStart), destination,
                validateDigests);
            first = last + 1;
        }
    }

    /// <summary>
    /// True when only the wanted slice of the chunk has to come from the blob: a chunk stored raw whose bytes nobody
    /// checks (no CRC, digests not validated). A 4 KiB read of a 1 MiB uncompressed chunk then reads 4 KiB, not the
    /// whole chunk (which made random reads of uncompressed images without a cache cost a chunk each). A raw chunk
    /// whose stored size is not its size is corrupt: it takes the whole-chunk path, which says so.
    /// </summary>
    private static bool ReadsSliceOnly(in ChunkRequest chunk, bool validateDigests) =>
        !chunk.IsCompressed && chunk.CompressedSize == chunk.UncompressedSize && !chunk.HasCrc32
        && !(validateDigests && chunk.Digest.Length == ChunkDigester.DigestSize);

    /// <summary>Where the bytes this read needs of <paramref name="chunk"/> start in its blob.</summary>
    private static long StoredStart(in ChunkRequest chunk, bool validateDigests) =>
        ReadsSliceOnly(in chunk, validateDigests) ? chunk.CompressedOffset + chunk.SliceStart : chunk.CompressedOffset;

    /// <summary>How many bytes of <paramref name="chunk"/> this read needs from its blob.</summary>
    private static int StoredLength(in ChunkRequest chunk, bool validateDigests) =>
        ReadsSliceOnly(in chunk, validateDigests) ? chunk.SliceLength : chunk.CompressedSize;

    private static void ReadRange(ReadOnlySpan<ChunkRequest> chunks, long rangeStart, int rangeLength,
        Span<byte> destination, bool validateDigests)
    {
        BlobRef blob = chunks[0].Blob;
        byte[] raw = ArrayPool<byte>.Shared.Rent(rangeLength);
        try
        {
            blob.Backend.Read(blob.Id, rangeStart, raw.AsSpan(0, rangeLength));
            foreach (ref readonly ChunkRequest chunk in chunks)
            {
                Span<byte> target = destination.Slice(chunk.DestinationOffset, chunk.SliceLength);
                if (ReadsSliceOnly(in chunk, validateDigests))
                {
                    raw.AsSpan((int)(StoredStart(in chunk, validateDigests) - rangeStart), chunk.SliceLength).CopyTo(target);
                    continue;
                }

                ReadOnlySpan<byte> stored = raw.AsSpan((int)(chunk.CompressedOffset - rangeStart), chunk.CompressedSize);
                DecodeChunk(in chunk, stored, target, validateDigests);
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(raw);
        }
    }

    private static void DecodeChunk(in ChunkRequest chunk, ReadOnlySpan<byte> stored, Span<byte> target,
        bool validateDigests)
    {
        bool wholeChunk = chunk.SliceStart == 0 && chunk.SliceLength == chunk.UncompressedSize;
        bool needsCheck = chunk.HasCrc32 || (validateDigests && chunk.Digest.Length == ChunkDigester.DigestSize);

        if (!chunk.IsCompressed)
        {
            if (stored.Length != chunk.UncompressedSize)
            {
                ThrowSizeMismatch(in chunk);
            }

            if (needsCheck)
            {
                Check(in chunk, stored, validateDigests);
            }

            stored.Slice(chunk.SliceStart, chunk.SliceLength).CopyTo(target);
            return;
        }

        // Decompress straight into the caller's buffer when it wants the whole chunk; otherwise via a pooled one.
        byte[]? rented = wholeChunk ? null : ArrayPool<byte>.Shared.Rent(chunk.UncompressedSize);
        try
        {
            Span<byte> plain = wholeChunk ? target : rented.AsSpan(0, chunk.UncompressedSize);
            if (!ChunkDecompressor.TryDecompress(chunk.Blob.Compression, stored, plain))
            {
                throw new StorageException(StorageErrorKind.DecompressionFailed,
                    $"chunk {chunk.ChunkIndex} of blob {chunk.Blob.Id} (offset {chunk.CompressedOffset}, " +
                    $"{chunk.CompressedSize} bytes) does not {chunk.Blob.Compression}-decompress to " +
                    $"{chunk.UncompressedSize} bytes");
            }

            if (needsCheck)
            {
                Check(in chunk, plain, validateDigests);
            }

            if (!wholeChunk)
            {
                plain.Slice(chunk.SliceStart, chunk.SliceLength).CopyTo(target);
            }
        }
        finally
        {
            if (rented is not null)
            {
                ArrayPool<byte>.Shared.Return(rented);
            }
        }
    }

    private static void Check(in ChunkRequest chunk, ReadOnlySpan<byte> plain, bool validateDigests)
    {
        // Upstream checks a chunk that carries a CRC even with digest validation off (cache/mod.rs validate_chunk_data).
        if (chunk.HasCrc32)
        {
            uint actual = Crc32C.Compute(plain);
            if (actual != chunk.Crc32)
            {
                throw new StorageException(StorageErrorKind.DigestMismatch,
                    $"chunk {chunk.ChunkIndex} of blob {chunk.Blob.Id} (offset {chunk.CompressedOffset}) has " +
                    $"CRC32C 0x{actual:x8}, expected 0x{chunk.Crc32:x8}");
            }

            return;
        }

        if (validateDigests && !ChunkDigester.Matches(chunk.Blob.Digest, plain, chunk.Digest.Span))
        {
            throw new StorageException(StorageErrorKind.DigestMismatch,
                $"chunk {chunk.ChunkIndex} of blob {chunk.Blob.Id} (offset {chunk.CompressedOffset}) does not match " +
                $"its {chunk.Blob.Digest} digest {Convert.ToHexStringLower(chunk.Digest.Span)}");
        }
    }

    [DoesNotReturn]
    private static void ThrowSizeMismatch(in ChunkRequest chunk) =>
        throw new StorageException(StorageErrorKind.DecompressionFailed,
            $"uncompressed chunk {chunk.ChunkIndex} of blob {chunk.Blob.Id} is {chunk.CompressedSize} bytes " +
            $"stored but {chunk.UncompressedSize} bytes long");
}
