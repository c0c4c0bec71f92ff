using Nydus.Actors.Storage;
using Nydus.Actors.Storage.Meta;

namespace Nydus.Actors.Rafs.Layout.V6;

/// <summary>
/// One extra device of an EROFS image as the flattened block device sees it (Nydus.Actors/Block): a RAFS v6 data
/// blob (read chunk by chunk at uncompressed offsets) or a raw device file of a plain image (read as is).
/// </summary>
/// <param name="SlotOffset">Byte offset of the 128-byte device-table slot in the image.</param>
/// <param name="Blocks">The slot's <c>blocks</c> (0 in mkfs.erofs 1.5 images).</param>
/// <param name="MappedBlockAddress">The slot's <c>mapped_blkaddr</c>: where the device starts in a flat device (0 = unset).</param>
/// <param name="RafsBlobIndex">Blob table index for a RAFS v6 blob, -1 for a raw device.</param>
/// <param name="UncompressedSize">RAFS v6: the blob entry's uncompressed size; raw devices: 0 (ask the backend).</param>
internal readonly record struct ErofsDeviceSlot(int Index, long SlotOffset, uint Blocks, uint MappedBlockAddress,
    BlobRef? Blob, int RafsBlobIndex, long UncompressedSize);

/// <summary>A chunk of a RAFS v6 blob placed at its uncompressed offset; <see cref="Request"/> asks for all of it.</summary>
internal readonly record struct UncompressedChunk(long UncompressedOffset, ChunkRequest Request);

internal sealed partial class ErofsImage
{
    /// <summary>The EROFS superblock fields the block device layout needs.</summary>
    internal ErofsSuperBlock SuperBlock => _sb;

    internal RafsOpenOptions OpenOptions => Options;

    /// <summary>
    /// The device table in slot order (slot i is device i + 1). For RAFS v6 slot i is blob i; the slots are the
    /// ones the kernel reads to translate chunk addresses, which is why a flattened device follows them.
    /// </summary>
    internal IReadOnlyList<ErofsDeviceSlot> DeviceSlots()
    {
        int count = _sb.ExtraDevices;
        var slots = new ErofsDeviceSlot[count];
        long tableOffset = (long)_sb.DeviceTableSlotOffset * 128;
        for (int i = 0; i < count; i++)
        {
            long slot = tableOffset + (long)i * 128;
            uint blocks = Data.U32(slot + 64, "device slot blocks");
            uint mapped = Data.U32(slot + 68, "device slot mapped_blkaddr");
            if (_sb.IsRafsV6)
            {
                if (i >= _blobEntries.Length)
                {
                    Data.Throw(RafsErrorKind.InvalidSuperBlock,
                        $"device slot {i} has no blob table entry ({_blobEntries.Length} blobs)");
                }

                slots[i] = new ErofsDeviceSlot(i, slot, blocks, mapped, _blobs[i], i,
                    (long)Math.Min(_blobEntries[i].UncompressedSize, long.MaxValue / 2));
            }
            else
            {
                slots[i] = new ErofsDeviceSlot(i, slot, blocks, mapped, i < _blobs.Length ? _blobs[i] : null, -1, 0);
            }
        }

        return slots;
    }

    /// <summary>
    /// Every chunk of RAFS v6 blob <paramref name="blobIndex"/>, sorted by uncompressed offset: what a reader of
    /// the blob's uncompressed form needs (upstream's block device reads the blob cache in that form). Fails for
    /// blobs whose chunks this build cannot read (zran, batch, encrypted, separate).
    /// </summary>
    internal UncompressedChunk[] UncompressedChunks(int blobIndex)
    {
        RafsV6BlobEntry entry = _blobEntries[blobIndex];
        BlobRef blob = _blobs[blobIndex] ?? throw new StorageException(StorageErrorKind.BlobNotFound,
            $"no blob backend configured for blob {entry.BlobId} of {Path}");
        if ((entry.Features & (RafsV6BlobEntry.FeatureZran | RafsV6BlobEntry.FeatureBatch | RafsV6BlobEntry.FeatureEncrypted
                | RafsV6BlobEntry.FeatureSeparate | RafsV6BlobEntry.FeatureTarfs)) != 0)
        {
            throw new StorageException(StorageErrorKind.Unsupported,
                $"blob {entry.BlobId} is zran, batch, encrypted, tarfs or in a separate blob (features 0x{entry.Features:x}): " +
                "it cannot be exposed as a block device by this build");
        }

        var chunks = new UncompressedChunk[entry.ChunkCount];
        for (uint i = 0; i < entry.ChunkCount; i++)
        {
            BlobChunkInfo info = ChunkInfo(blobIndex, i);
            if (info.IsUnsupported || info.UncompressedSize > V5.RafsV5SuperBlock.MaxChunkSize || info.CompressedSize <= 0
                || info.UncompressedOffset < 0 || info.UncompressedOffset + info.UncompressedSize > (long)entry.UncompressedSize)
            {
                Data.Throw(RafsErrorKind.InvalidChunk,
                    $"chunk {i} of blob {entry.BlobId} has impossible sizes or lies past the blob's uncompressed size " +
                    $"{entry.UncompressedSize}");
            }

            ReadOnlyMemory<byte> digest = default;
            if (Options.ValidateDigests && ChunkTableRecord(blobIndex, i) is long record)
            {
                digest = Data.Memory(record, 32, "chunk table digest");
            }

            chunks[i] = new UncompressedChunk(info.UncompressedOffset, new ChunkRequest
            {
                Blob = blob,
                ChunkIndex = i,
                CompressedOffset = info.CompressedOffset,
                CompressedSize = info.IsCompressed ? info.CompressedSize : info.UncompressedSize,
                UncompressedSize = info.UncompressedSize,
                IsCompressed = info.IsCompressed,
                Digest = digest,
                HasCrc32 = info.HasCrc32,
                Crc32 = info.Crc32,
                SliceStart = 0,
                SliceLength = info.UncompressedSize,
                DestinationOffset = 0,
            });
        }

        Array.Sort(chunks, static (a, b) => a.UncompressedOffset.CompareTo(b.UncompressedOffset));
        for (int i = 1; i < chunks.Length; i++)
        {
            if (chunks[i].UncompressedOffset < chunks[i - 1].UncompressedOffset + chunks[i - 1].Request.UncompressedSize)
            {
                Data.Throw(RafsErrorKind.InvalidChunk,
                    $"chunks {chunks[i - 1].Request.ChunkIndex} and {chunks[i].Request.ChunkIndex} of blob {entry.BlobId} " +
                    "overlap in the uncompressed blob");
            }
        }

        return chunks;
    }
}
