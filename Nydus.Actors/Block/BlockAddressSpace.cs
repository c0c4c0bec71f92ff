using System.Buffers;
using System.Buffers.Binary;
using Microsoft.Win32.SafeHandles;
using Nydus.Actors.Rafs;
using Nydus.Actors.Rafs.Layout.V6;
using Nydus.Actors.Storage;
using Nydus.Actors.Storage.Backends;
using Nydus.Actors.Storage.Digest;

namespace Nydus.Actors.Block;

/// <summary>
/// An image as one linear device of 4 KiB blocks that the kernel's EROFS driver mounts directly (upstream's
/// service/src/block_device.rs): the metadata blob (bootstrap) from block 0, then every data blob at its
/// <c>mapped_blkaddr</c> in its uncompressed form (each chunk at its uncompressed offset), zeros in between.
/// A plain single-device EROFS image is passed through as it is.
/// <para>
/// Going past upstream, which refuses them: a device slot with no <c>mapped_blkaddr</c> (mkfs.erofs
/// <c>--blobdev</c> images, old builders) is placed after the previous extent, 512 KiB aligned as current nydus
/// builders do, and the served copy of the device table says so (the superblock checksum of a plain image is
/// recomputed), so the kernel's flat-device mode finds the data.
/// </para>
/// Reads come from the image's blob backend (blob cache, registry, local files) through the chunk reader of the
/// open options (<see cref="RafsOpenOptions.ChunkReader"/>: the one that heals its blob cache) on the caller's thread; nothing
/// is loaded up front but the bootstrap. Thread-safe: every method may be called from many threads at once.
/// </summary>
public sealed class BlockAddressSpace : IDisposable
{
    public const int BlockSize = 4096;

    /// <summary>Blob placement granularity of nydus builders for unmapped devices (512 KiB).</summary>
    private const long PlacementAlignmentBlocks = (512 << 10) / BlockSize;

    private readonly SafeFileHandle _bootstrap;
    private readonly long _bootstrapLength;
    private readonly Dictionary<long, byte[]> _patchedBlocks;
    private readonly Source[] _sources;
    private IDisposable[] _owned;
    private readonly bool _validateDigests;
    private readonly int _mergeSize;
    private readonly IChunkReader _chunkReader;

    private BlockAddressSpace(SafeFileHandle bootstrap, long bootstrapLength, Dictionary<long, byte[]> patchedBlocks,
        Source[] sources, IDisposable[] owned, RafsOpenOptions options, bool validateDigests)
    {
        _chunkReader = options.ChunkReader;
        _bootstrap = bootstrap;
        _bootstrapLength = bootstrapLength;
        _patchedBlocks = patchedBlocks;
        _sources = sources;
        _owned = owned;
        _validateDigests = validateDigests;
        _mergeSize = options.MergeSize;
        Extents = Array.ConvertAll(sources, s => s.Extent);
        BlockCount = sources.Length == 0 ? 0 : sources[^1].Extent.EndBlock;
    }

    public long BlockCount { get; }

    public long Size => BlockCount * BlockSize;

    /// <summary>The layout in block order, without gaps: metadata, holes and data extents.</summary>
    public IReadOnlyList<BlockExtent> Extents { get; }

    /// <summary>Block numbers whose served bytes differ from the bootstrap file (patched device table).</summary>
    public IReadOnlyCollection<long> PatchedBlocks => _patchedBlocks.Keys;

    /// <summary>
    /// Lays out <paramref name="bootstrapPath"/> (RAFS v6 or EROFS; RAFS v5 has no block addresses) over its
    /// blobs in <paramref name="blobs"/>. The returned space owns <paramref name="owned"/> (backends) and disposes
    /// them after itself. Errors: <see cref="RafsException"/> for images that cannot be a block device.
    /// </summary>
    public static BlockAddressSpace Open(string bootstrapPath, BlobSource blobs, RafsOpenOptions options,
        params IDisposable[] owned)
    {
        SafeFileHandle? handle = null;
        RafsImage? image = null;
        try
        {
            handle = File.OpenHandle(bootstrapPath, FileMode.Open, FileAccess.Read);
            long length = RandomAccess.GetLength(handle);
            var head = new byte[Math.Min(length, 2 * BlockSize)];
            RandomAccess.Read(handle, head, 0);
            if (head.Length >= ErofsSuperBlock.Offset + ErofsSuperBlock.Size
                && BinaryPrimitives.ReadUInt32LittleEndian(head.AsSpan(ErofsSuperBlock.Offset)) == ErofsSuperBlock.Magic
                && (BinaryPrimitives.ReadUInt32LittleEndian(head.AsSpan(ErofsSuperBlock.Offset + 8)) & ErofsSuperBlock.CompatRafsV6) == 0
                && BinaryPrimitives.ReadUInt16LittleEndian(head.AsSpan(ErofsSuperBlock.Offset + 86)) == 0)
            {
                // A plain single-device EROFS image is already a block device (compressed ones included: the
                // kernel decompresses). No need to parse, or even fit in memory.
                if (head[ErofsSuperBlock.Offset + 12] != 12)
                {
                    throw new RafsException(RafsErrorKind.Unsupported,
                        $"EROFS block size 2^{head[ErofsSuperBlock.Offset + 12]} is not 4096 in {bootstrapPath}");
                }

                var passThrough = new BlockExtent(0, (length + BlockSize - 1) / BlockSize, BlockExtentKind.Metadata, bootstrapPath);
                var result = new BlockAddressSpace(handle, length, new Dictionary<long, byte[]>(),
                    [new Source(passThrough, null, null)], owned, options, validateDigests: false);
                handle = null;
                return result;
            }

            image = RafsImage.Open(bootstrapPath, blobs, options);
            if (image is not ErofsImage erofs)
            {
                throw new RafsException(RafsErrorKind.Unsupported,
                    $"{bootstrapPath} is {image.Format}: only RAFS v6 and EROFS images have block addresses (RAFS v5 cannot be a block device)");
            }

            var space = Layout(erofs, handle, length, bootstrapPath, [image, .. owned]);
            handle = null;
            image = null;
            return space;
        }
        catch (IOException e)
        {
            throw new RafsException(RafsErrorKind.IoError, $"cannot read bootstrap {bootstrapPath}: {e.Message}", e);
        }
        finally
        {
            image?.Dispose();
            handle?.Dispose();
        }
    }

    private static BlockAddressSpace Layout(ErofsImage image, SafeFileHandle handle, long length, string path,
        IDisposable[] owned)
    {
        ErofsSuperBlock sb = image.SuperBlock;
        if (sb.BlockSize != BlockSize)
        {
            throw new RafsException(RafsErrorKind.Unsupported,
                $"EROFS block size {sb.BlockSize} is not 4096 in {path} (RAFS tarfs images are not supported as block devices)");
        }

        var sources = new List<Source>();
        long metaBlocks = (length + BlockSize - 1) / BlockSize;
        sources.Add(new Source(new BlockExtent(0, metaBlocks, BlockExtentKind.Metadata, path), null, null));
        long position = metaBlocks;
        var patches = new Dictionary<long, byte[]>();
        foreach (ErofsDeviceSlot slot in image.DeviceSlots())
        {
            BlobRef blob = slot.Blob ?? throw new StorageException(StorageErrorKind.BlobNotFound,
                $"no backend or device file configured for device {slot.Index + 1} of {path}");
            UncompressedChunk[]? chunks = null;
            long bytes;
            if (slot.RafsBlobIndex >= 0)
            {
                chunks = image.UncompressedChunks(slot.RafsBlobIndex);
                bytes = slot.UncompressedSize;
            }
            else
            {
                bytes = slot.Blocks != 0 ? (long)slot.Blocks * BlockSize : blob.Backend.GetBlobSize(blob.Id);
            }

            long blocks = (bytes + BlockSize - 1) / BlockSize;
            long start = slot.MappedBlockAddress;
            if (start == 0)
            {
                start = (position + PlacementAlignmentBlocks - 1) / PlacementAlignmentBlocks * PlacementAlignmentBlocks;
            }
            else if (start < position)
            {
                throw new RafsException(RafsErrorKind.InvalidSuperBlock,
                    $"device {slot.Index + 1} ({blob.Id}) is mapped at block {start}, inside the previous extent (ends at {position}) in {path}");
            }

            if (start + blocks > uint.MaxValue)
            {
                throw new RafsException(RafsErrorKind.InvalidSuperBlock,
                    $"device {slot.Index + 1} ({blob.Id}) of {blocks} blocks at {start} does not fit 32-bit block addresses in {path}");
            }

            if (start != slot.MappedBlockAddress || (slot.Blocks != blocks && slot.RafsBlobIndex < 0))
            {
                Patch(handle, length, patches, slot.SlotOffset + 64, (uint)blocks);
                Patch(handle, length, patches, slot.SlotOffset + 68, (uint)start);
            }

            if (start > position)
            {
                sources.Add(new Source(new BlockExtent(position, start - position, BlockExtentKind.Hole, ""), null, null));
            }

            sources.Add(new Source(new BlockExtent(start, blocks, BlockExtentKind.Data, blob.Id), blob, chunks) { DataBytes = bytes });
            position = start + blocks;
        }

        if (patches.Count > 0 && (sb.FeatureCompat & ErofsSuperBlock.CompatSbChecksum) != 0 && patches.TryGetValue(0, out byte[]? block0))
        {
            // The superblock checksum covers bytes [1024, 4096) of block 0 with the field zeroed (rafs.md §2.2).
            BinaryPrimitives.WriteUInt32LittleEndian(block0.AsSpan(ErofsSuperBlock.Offset + 4), 0);
            uint crc = Crc32C.Update(0xFFFF_FFFFu, block0.AsSpan(ErofsSuperBlock.Offset));
            BinaryPrimitives.WriteUInt32LittleEndian(block0.AsSpan(ErofsSuperBlock.Offset + 4), crc);
        }

        return new BlockAddressSpace(handle, length, patches, sources.ToArray(), owned, image.OpenOptions,
            image.OpenOptions.ValidateDigests);
    }

    private static void Patch(SafeFileHandle handle, long length, Dictionary<long, byte[]> patches, long offset, uint value)
    {
        long block = offset / BlockSize;
        if (!patches.TryGetValue(block, out byte[]? bytes))
        {
            bytes = new byte[BlockSize];
            long start = block * BlockSize;
            RandomAccess.Read(handle, bytes.AsSpan(0, (int)Math.Min(BlockSize, length - start)), start);
            patches.Add(block, bytes);
        }

        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan((int)(offset % BlockSize)), value);
    }

    /// <summary>
    /// Fills <paramref name="destination"/> with the device bytes from <paramref name="offset"/> (any alignment).
    /// The range must lie inside the device (<see cref="ArgumentOutOfRangeException"/>); data that cannot be
    /// fetched or fails its checks throws <see cref="StorageException"/> / <see cref="RafsException"/>.
    /// </summary>
    public void Read(long offset, Span<byte> destination)
    {
        if (offset < 0 || offset > Size - destination.Length)
        {
            throw new ArgumentOutOfRangeException(nameof(offset),
                $"range [{offset}, {offset + destination.Length}) is outside the {Size}-byte device");
        }

        int done = 0;
        while (done < destination.Length)
        {
            long at = offset + done;
            Source source = FindSource(at / BlockSize);
            long extentStart = source.Extent.StartBlock * BlockSize;
            int length = (int)Math.Min(destination.Length - done, source.Extent.EndBlock * BlockSize - at);
            Span<byte> target = destination.Slice(done, length);
            switch (source.Extent.Kind)
            {
                case BlockExtentKind.Hole:
                    target.Clear();
                    break;
                case BlockExtentKind.Metadata:
                    ReadMetadata(at, target);
                    break;
                default:
                    ReadData(source, at - extentStart, target);
                    break;
            }

            done += length;
        }
    }

    /// <summary>
    /// Whether the device range [<paramref name="offset"/>, +<paramref name="length"/>) is stored as it is in one
    /// local file (the bootstrap of the metadata extent outside patched blocks, or a raw data device of a
    /// <see cref="ILocalBlobFiles"/> backend such as localfs), and where: then a reader may move those file bytes
    /// itself (splice to a socket) instead of calling <see cref="Read"/>. The handle stays owned by this device.
    /// Ranges of RAFS chunks, holes, padding past a file's end and patched blocks answer false.
    /// </summary>
    public bool TryMapToFile(long offset, int length, out SafeFileHandle file, out long fileOffset)
    {
        file = null!;
        fileOffset = 0;
        if (length <= 0 || offset < 0 || offset > Size - length) return false;
        Source source = FindSource(offset / BlockSize);
        long extentStart = source.Extent.StartBlock * BlockSize;
        if (offset + length > source.Extent.EndBlock * BlockSize) return false;
        switch (source.Extent.Kind)
        {
            case BlockExtentKind.Metadata:
                if (offset + length > _bootstrapLength) return false;
                foreach (long block in _patchedBlocks.Keys)
                {
                    if (block * BlockSize < offset + length && (block + 1) * BlockSize > offset) return false;
                }

                file = _bootstrap;
                fileOffset = offset;
                return true;
            case BlockExtentKind.Data when source.Chunks is null && offset - extentStart + length <= source.DataBytes
                                           && source.Blob!.Backend is ILocalBlobFiles files
                                           && files.TryGetBlobFile(source.Blob.Id, out file):
                fileOffset = offset - extentStart;
                return true;
            default:
                return false;
        }
    }

    /// <summary>The extent holding byte <paramref name="offset"/> (for callers describing allocation).</summary>
    public BlockExtent ExtentAt(long offset) => FindSource(offset / BlockSize).Extent;

    private Source FindSource(long block)
    {
        int lo = 0, hi = _sources.Length - 1;
        while (lo < hi)
        {
            int mid = (lo + hi + 1) >> 1;
            if (_sources[mid].Extent.StartBlock <= block) lo = mid;
            else hi = mid - 1;
        }

        return _sources[lo];
    }

    private void ReadMetadata(long offset, Span<byte> target)
    {
        int stored = (int)Math.Clamp(_bootstrapLength - offset, 0, target.Length);
        int read = 0;
        while (read < stored)
        {
            int n = RandomAccess.Read(_bootstrap, target.Slice(read, stored - read), offset + read);
            if (n == 0) break;
            read += n;
        }

        target.Slice(read).Clear();
        if (_patchedBlocks.Count == 0) return;
        foreach ((long block, byte[] bytes) in _patchedBlocks)
        {
            long blockStart = block * BlockSize;
            long from = Math.Max(blockStart, offset), to = Math.Min(blockStart + BlockSize, offset + target.Length);
            if (from < to)
            {
                bytes.AsSpan((int)(from - blockStart), (int)(to - from)).CopyTo(target.Slice((int)(from - offset)));
            }
        }
    }

    private void ReadData(Source source, long offset, Span<byte> target)
    {
        // Bytes past the device's own size (block padding) are zero.
        int inside = (int)Math.Clamp(source.DataBytes - offset, 0, target.Length);
        target.Slice(inside).Clear();
        if (inside == 0) return;
        target = target.Slice(0, inside);
        BlobRef blob = source.Blob!;
        if (source.Chunks is not { } chunks)
        {
            blob.Backend.Read(blob.Id, offset, target);
            return;
        }

        // A RAFS blob in its uncompressed form: each chunk at its uncompressed offset, zeros between them.
        target.Clear();
        int first = FirstChunkEndingAfter(chunks, offset);
        int count = 0;
        while (first + count < chunks.Length && chunks[first + count].UncompressedOffset < offset + target.Length)
        {
            count++;
        }

        if (count == 0) return;
        ChunkRequest[] requests = ArrayPool<ChunkRequest>.Shared.Rent(count);
        try
        {
            for (int i = 0; i < count; i++)
            {
                UncompressedChunk chunk = chunks[first + i];
                long sliceStart = Math.Max(offset, chunk.UncompressedOffset);
                long sliceEnd = Math.Min(offset + target.Length, chunk.UncompressedOffset + chunk.Request.UncompressedSize);
                requests[i] = chunk.Request with
                {
                    SliceStart = (int)(sliceStart - chunk.UncompressedOffset),
                    SliceLength = (int)(sliceEnd - sliceStart),
                    DestinationOffset = (int)(sliceStart - offset),
                };
            }

            _chunkReader.Read(requests.AsSpan(0, count), target, _validateDigests, _mergeSize);
        }
        finally
        {
            ArrayPool<ChunkRequest>.Shared.Return(requests, clearArray: true);
        }
    }

    private static int FirstChunkEndingAfter(UncompressedChunk[] chunks, long offset)
    {
        int lo = 0, hi = chunks.Length;
        while (lo < hi)
        {
            int mid = (lo + hi) >> 1;
            if (chunks[mid].UncompressedOffset + chunks[mid].Request.UncompressedSize <= offset) lo = mid + 1;
            else hi = mid;
        }

        return lo;
    }

    /// <summary>Makes the space dispose <paramref name="resource"/> too, after what it owns already (what that was
    /// opened in: a blob cache registry of its own).</summary>
    internal BlockAddressSpace Own(IDisposable resource)
    {
        _owned = [.. _owned, resource];
        return this;
    }

    public void Dispose()
    {
        _bootstrap.Dispose();
        foreach (IDisposable owned in _owned) owned.Dispose();
    }

    private sealed record Source(BlockExtent Extent, BlobRef? Blob, UncompressedChunk[]? Chunks)
    {
        public long DataBytes { get; init; }
    }
}
