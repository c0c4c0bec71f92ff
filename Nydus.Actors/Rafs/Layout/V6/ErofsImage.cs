using System.Buffers;
using System.Buffers.Binary;
using System.Numerics;
using Nydus.Actors.Rafs.Metadata;
using Nydus.Actors.Storage;
using Nydus.Actors.Storage.Backends;
using Nydus.Actors.Storage.Compression;
using Nydus.Actors.Storage.Digest;
using Nydus.Actors.Storage.Meta;

namespace Nydus.Actors.Rafs.Layout.V6;

/// <summary>
/// An EROFS image: a RAFS v6 bootstrap (data in nydus blobs, located through each blob's chunk-info array) or a
/// plain mkfs.erofs image (data in the image itself or in extra devices). Inode number = nid, like upstream
/// (rafs/src/metadata/direct_v6.rs) and the kernel.
/// </summary>
internal sealed partial class ErofsImage : RafsImage
{
    private const uint NullAddress = 0xFFFF_FFFF;
    private const int DirentSize = 12;
    private const int MaxNameLength = 255;
    private const int MaxChunksPerRead = 1 << 16;

    private readonly ErofsSuperBlock _sb;
    private readonly RafsV6SuperBlockExt? _ext;
    private readonly RafsV6BlobEntry[] _blobEntries = Array.Empty<RafsV6BlobEntry>();
    private readonly BlobRef?[] _blobs;
    private readonly BlobChunkInfoArray?[] _chunkInfos;
    private readonly List<IDisposable> _owned = new();
    private readonly object _loadLock = new();
    private Dictionary<(int Blob, uint Chunk), long>? _chunkTableIndex;

    public ErofsImage(ImageData data, BlobSource blobs, RafsOpenOptions options)
        : base(data, options)
    {
        _sb = ErofsSuperBlock.Load(data);
        BlockSize = _sb.BlockSize;
        MetaBase = (long)_sb.MetaBlockAddress * BlockSize;
        if (_sb.IsRafsV6)
        {
            _ext = RafsV6SuperBlockExt.Load(data);
            int count = (int)(_ext.BlobTableSize / RafsV6BlobEntry.Size);
            _blobEntries = new RafsV6BlobEntry[count];
            _blobs = new BlobRef?[count];
            for (int i = 0; i < count; i++)
            {
                RafsV6BlobEntry entry = RafsV6BlobEntry.Load(data, _ext.BlobTableOffset + (long)i * RafsV6BlobEntry.Size, i,
                    _ext.ChunkSize);
                _blobEntries[i] = entry;
                _blobs[i] = blobs.Backend is null ? null : new BlobRef(entry.BlobId, blobs.Backend, entry.Compression, entry.Digest);
            }
        }
        else
        {
            _blobs = LoadDevices(data, blobs);
        }

        _chunkInfos = new BlobChunkInfoArray?[_blobs.Length];
        Blobs = PresentBlobs(_blobs);
        if (MetaBase > data.Length)
        {
            data.Throw(RafsErrorKind.OutOfBounds, $"meta_blkaddr {_sb.MetaBlockAddress} past end of image (size {data.Length})");
        }
    }

    public override IReadOnlyList<BlobRef> Blobs { get; }

    public override IReadOnlyList<string> DataBlobIds => _sb.IsRafsV6 ? [.. _blobEntries.Select(e => e.BlobId)] : [];

    public override RafsFormat Format => _sb.IsRafsV6 ? RafsFormat.RafsV6 : RafsFormat.Erofs;

    /// <summary>As upstream's try_load_v6; a plain EROFS image has no RAFS extended superblock and reports version 0.</summary>
    public override RafsSuperMeta SuperMeta => new()
    {
        Version = _sb.IsRafsV6 ? 0x600u : 0,
        Magic = ErofsSuperBlock.Magic,
        MetaBlkaddr = _sb.MetaBlockAddress,
        RootNid = (ushort)_sb.RootNid,
        BlobDeviceTableCount = _sb.ExtraDevices,
        BlobDeviceTableOffset = (ulong)_sb.DeviceTableSlotOffset * 128,
        InodesCount = _sb.Inodes,
        ChunkSize = _ext?.ChunkSize ?? 0,
        BlobTableOffset = (ulong)(_ext?.BlobTableOffset ?? 0),
        BlobTableSize = _ext?.BlobTableSize ?? 0,
        ChunkTableOffset = (ulong)(_ext?.ChunkTableOffset ?? 0),
        ChunkTableSize = (ulong)(_ext?.ChunkTableSize ?? 0),
        Flags = new RafsFlagBits((ulong)(_ext?.Flags ?? 0)),
        PrefetchTableEntries = (_ext?.PrefetchTableSize ?? 0) / sizeof(uint),
        PrefetchTableOffset = (ulong)(_ext?.PrefetchTableOffset ?? 0),
    };

    public override ulong RootInode => _sb.RootNid;

    public override bool HasXattrs => _ext is null || (_ext.Flags & RafsSuperFlags.HasXattr) != 0;

    public override ulong InodeCount => _sb.Inodes;

    private int BlockSize { get; }

    private long MetaBase { get; }

    public override InodeAttr GetAttr(ulong ino)
    {
        ErofsInode inode = LoadInode(ino);
        bool storedIds = _ext is null || (_ext.Flags & RafsSuperFlags.ExplicitUidGid) != 0;
        return new InodeAttr
        {
            Ino = ino,
            Mode = inode.Mode,
            Uid = storedIds ? inode.Uid : Options.DefaultUid,
            Gid = storedIds ? inode.Gid : Options.DefaultGid,
            Size = inode.IsDevice || inode.Type == 0x1000 || inode.Type == 0xC000 ? 0 : inode.Size,
            NLink = inode.NLink,
            // EROFS stores time64_t in a u64 field (the kernel reads it signed): before 1970 is negative.
            MtimeSeconds = unchecked((long)(inode.HasMtime ? inode.Mtime : _sb.BuildTime)),
            MtimeNanoseconds = inode.HasMtime ? inode.MtimeNanoseconds : _sb.BuildTimeNanoseconds,
            Rdev = inode.IsDevice ? inode.U : 0,
            Blocks = (inode.Size + 511) / 512,
        };
    }

    public override bool TryLookup(ulong parent, ReadOnlySpan<byte> name, out ulong ino)
    {
        ErofsInode dir = LoadInode(parent);
        ino = 0;
        if (!dir.IsDirectory)
        {
            return false;
        }

        if (name.SequenceEqual("."u8))
        {
            ino = parent;
            return true;
        }

        long blocks = DirectoryBlockCount(in dir);
        // Names are sorted across the whole directory: find the last block whose first name is <= the target.
        long lo = 0;
        long hi = blocks - 1;
        long candidate = 0;
        while (lo <= hi)
        {
            long mid = lo + ((hi - lo) >> 1);
            var block = new DirentBlock(this, in dir, mid);
            int cmp = block.Name(0).SequenceCompareTo(name);
            if (cmp == 0)
            {
                ino = CheckedChild(in dir, block.Nid(0), block.Name(0));
                return true;
            }

            if (cmp < 0)
            {
                candidate = mid;
                lo = mid + 1;
            }
            else
            {
                hi = mid - 1;
            }
        }

        if (blocks == 0)
        {
            return false;
        }

        var found = new DirentBlock(this, in dir, candidate);
        int first = 0;
        int last = found.Count - 1;
        while (first <= last)
        {
            int mid = first + ((last - first) >> 1);
            int cmp = found.Name(mid).SequenceCompareTo(name);
            if (cmp == 0)
            {
                ino = CheckedChild(in dir, found.Nid(mid), name);
                return true;
            }

            if (cmp < 0)
            {
                first = mid + 1;
            }
            else
            {
                last = mid - 1;
            }
        }

        return false;
    }

    public override void ReadDir<TSink>(ulong ino, long offset, ref TSink sink)
    {
        ErofsInode dir = LoadInode(ino);
        if (!dir.IsDirectory)
        {
            Data.Throw(RafsErrorKind.InvalidInode, $"readdir of nid {ino}, which is not a directory");
        }

        long blocks = DirectoryBlockCount(in dir);
        long position = 0;
        for (long b = 0; b < blocks; b++)
        {
            var block = new DirentBlock(this, in dir, b);
            if (position + block.Count <= offset)
            {
                position += block.Count;
                continue;
            }

            for (int i = 0; i < block.Count; i++, position++)
            {
                if (position < offset)
                {
                    continue;
                }

                ReadOnlySpan<byte> name = block.Name(i);
                ulong child = CheckedChild(in dir, block.Nid(i), name);
                if (!sink.TryAdd(name, child, FileTypeToInodeType(block.FileType(i)), position + 1))
                {
                    return;
                }
            }
        }
    }

    public override int ReadLink(ulong ino, Span<byte> destination)
    {
        ErofsInode inode = LoadInode(ino);
        if (!inode.IsSymlink)
        {
            Data.Throw(RafsErrorKind.InvalidInode, $"readlink of nid {ino}, which is not a symlink");
        }

        if (inode.Size > 4096)
        {
            Data.Throw(RafsErrorKind.InvalidInode, $"symlink nid {ino} has target size {inode.Size} (max 4096)");
        }

        int length = (int)inode.Size;
        if (length <= destination.Length)
        {
            ReadFlat(in inode, 0, destination.Slice(0, length));
        }

        return length;
    }

    public override int ListXattrs(ulong ino, Span<byte> destination)
    {
        ErofsInode inode = LoadInode(ino);
        int needed = 0;
        var entries = new XattrEntries(this, in inode);
        while (entries.MoveNext(out ReadOnlySpan<byte> prefix, out ReadOnlySpan<byte> suffix, out _))
        {
            int length = prefix.Length + suffix.Length + 1;
            if (needed + length <= destination.Length)
            {
                prefix.CopyTo(destination.Slice(needed));
                suffix.CopyTo(destination.Slice(needed + prefix.Length));
                destination[needed + length - 1] = 0;
            }

            needed += length;
        }

        return needed;
    }

    public override int GetXattr(ulong ino, ReadOnlySpan<byte> name, Span<byte> destination)
    {
        ErofsInode inode = LoadInode(ino);
        var entries = new XattrEntries(this, in inode);
        while (entries.MoveNext(out ReadOnlySpan<byte> prefix, out ReadOnlySpan<byte> suffix, out ReadOnlySpan<byte> value))
        {
            if (name.Length == prefix.Length + suffix.Length && name.StartsWith(prefix) && name.Slice(prefix.Length).SequenceEqual(suffix))
            {
                if (value.Length <= destination.Length)
                {
                    value.CopyTo(destination);
                }

                return value.Length;
            }
        }

        return -1;
    }

    public override IReadOnlyList<ulong> PrefetchTable
    {
        get
        {
            if (_ext is null || _ext.PrefetchTableOffset == 0)
            {
                return Array.Empty<ulong>();
            }

            return Data.PrefetchInodes(_ext.PrefetchTableOffset, _ext.PrefetchTableSize / 4);
        }
    }

    public override void CollectChunkRanges(ulong ino, List<BlobRange> ranges)
    {
        ErofsInode inode = LoadInode(ino);
        if (!inode.IsRegular || inode.Layout != ErofsInode.LayoutChunkBased || inode.Size == 0)
        {
            // Flat layouts keep their data in the bootstrap: nothing to fetch.
            return;
        }

        bool indexes = (inode.U & 0x20) != 0;
        if (!indexes)
        {
            return;
        }

        int blkBits = (int)(inode.U & 0x1F);
        long chunkSize = _ext is not null ? _ext.ChunkSize : (long)BlockSize << blkBits;
        long tableStart = (inode.TailOffset + 7) / 8 * 8;
        long chunkCount = ((long)inode.Size + chunkSize - 1) / chunkSize;
        for (long k = 0; k < chunkCount; k++)
        {
            ReadOnlySpan<byte> index = Data.Span(tableStart + k * 8, 8, "chunk index");
            ushort low = BinaryPrimitives.ReadUInt16LittleEndian(index);
            ushort deviceId = BinaryPrimitives.ReadUInt16LittleEndian(index.Slice(2));
            uint blkAddr = BinaryPrimitives.ReadUInt32LittleEndian(index.Slice(4));
            int length = (int)Math.Min(chunkSize, (long)inode.Size - k * chunkSize);
            if (_ext is not null)
            {
                ChunkRequest chunk = RafsChunkRequest(in inode, low, deviceId, 0, length, 0);
                ranges.Add(new BlobRange(chunk.Blob, chunk.CompressedOffset, chunk.CompressedSize));
                continue;
            }

            int device = deviceId & (int)(BitOperations.RoundUpToPowerOf2((uint)_sb.ExtraDevices + 1) - 1);
            if (blkAddr != NullAddress && device != 0)
            {
                ranges.Add(new BlobRange(DeviceBlob(device), (long)blkAddr * BlockSize, length));
            }
        }
    }

    public override int Read(ulong ino, long offset, Span<byte> destination)
    {
        ErofsInode inode = LoadInode(ino);
        if (!inode.IsRegular)
        {
            Data.Throw(RafsErrorKind.InvalidInode, $"read of nid {ino}, which is not a regular file");
        }

        if (offset < 0 || (ulong)offset >= inode.Size || destination.IsEmpty)
        {
            return 0;
        }

        int length = (int)Math.Min((ulong)destination.Length, inode.Size - (ulong)offset);
        Span<byte> target = destination.Slice(0, length);
        switch (inode.Layout)
        {
            case ErofsInode.LayoutFlatPlain:
            case ErofsInode.LayoutFlatInline:
                ReadFlat(in inode, offset, target);
                break;
            case ErofsInode.LayoutChunkBased:
                ReadChunked(in inode, offset, target);
                break;
            default:
                throw new RafsException(RafsErrorKind.Unsupported,
                    $"nid {ino} uses compressed EROFS layout {inode.Layout}, which is not supported, in {Path}");
        }

        return length;
    }

    public override void Dispose()
    {
        foreach (IDisposable owned in _owned)
        {
            owned.Dispose();
        }

        base.Dispose();
    }

    private ErofsInode LoadInode(ulong nid)
    {
        if (nid > (ulong)(Data.Length - MetaBase) / ErofsInode.SlotSize)
        {
            throw new RafsException(RafsErrorKind.NoSuchInode, $"nid {nid} lies past the end of {Path}");
        }

        return new ErofsInode(Data, nid, MetaBase + (long)nid * ErofsInode.SlotSize);
    }

    /// <summary>A child nid from a dirent; a directory listing itself under another name would make walks loop.</summary>
    private ulong CheckedChild(in ErofsInode dir, ulong nid, ReadOnlySpan<byte> name)
    {
        if (nid == dir.Nid && !name.SequenceEqual("."u8) && !(name.SequenceEqual(".."u8) && dir.Nid == _sb.RootNid))
        {
            Data.Throw(RafsErrorKind.InvalidDirectory, $"directory nid {dir.Nid} contains itself as an entry");
        }

        return nid;
    }

    private long DirectoryBlockCount(in ErofsInode dir)
    {
        if (dir.Layout != ErofsInode.LayoutFlatPlain && dir.Layout != ErofsInode.LayoutFlatInline)
        {
            Data.Throw(RafsErrorKind.Unsupported, $"directory nid {dir.Nid} uses data layout {dir.Layout}");
        }

        if (dir.Size > (ulong)Data.Length)
        {
            Data.Throw(RafsErrorKind.InvalidDirectory, $"directory nid {dir.Nid} has size {dir.Size} past the image end");
        }

        return ((long)dir.Size + BlockSize - 1) / BlockSize;
    }

    /// <summary>The bytes of logical block <paramref name="block"/> of a FLAT_PLAIN / FLAT_INLINE inode.</summary>
    private ReadOnlySpan<byte> FlatBlock(in ErofsInode inode, long block)
    {
        long size = (long)inode.Size;
        long blocks = (size + BlockSize - 1) / BlockSize;
        int length = (int)Math.Min(BlockSize, size - block * BlockSize);
        if (inode.Layout == ErofsInode.LayoutFlatInline && block == blocks - 1)
        {
            // The tail block sits right after the inode and its xattrs and must not cross a block boundary.
            if (inode.TailOffset % BlockSize + length > BlockSize)
            {
                Data.Throw(RafsErrorKind.InvalidInode, $"inline tail of nid {inode.Nid} crosses a block boundary");
            }

            return Data.Span(inode.TailOffset, length, "inline data");
        }

        if (inode.Layout != ErofsInode.LayoutFlatPlain && inode.Layout != ErofsInode.LayoutFlatInline)
        {
            Data.Throw(RafsErrorKind.Unsupported, $"nid {inode.Nid} uses data layout {inode.Layout} for metadata");
        }

        return Data.Span(((long)inode.U + block) * BlockSize, length, "data block");
    }

    private void ReadFlat(in ErofsInode inode, long offset, Span<byte> target)
    {
        long size = (long)inode.Size;
        long blocks = (size + BlockSize - 1) / BlockSize;
        // FLAT_INLINE keeps its last block after the inode; every other block is contiguous from i_u.
        long contiguousEnd = inode.Layout == ErofsInode.LayoutFlatInline ? (blocks - 1) * BlockSize : size;
        int done = 0;
        if (offset < contiguousEnd)
        {
            if (inode.Layout != ErofsInode.LayoutFlatPlain && inode.Layout != ErofsInode.LayoutFlatInline)
            {
                Data.Throw(RafsErrorKind.Unsupported, $"nid {inode.Nid} uses data layout {inode.Layout} for metadata");
            }

            done = (int)Math.Min(target.Length, contiguousEnd - offset);
            Data.Read((long)inode.U * BlockSize + offset, target.Slice(0, done), "data block");
        }

        while (done < target.Length)
        {
            long pos = offset + done;
            long block = pos / BlockSize;
            int inBlock = (int)(pos % BlockSize);
            ReadOnlySpan<byte> bytes = FlatBlock(in inode, block).Slice(inBlock);
            int n = Math.Min(bytes.Length, target.Length - done);
            bytes.Slice(0, n).CopyTo(target.Slice(done));
            done += n;
        }
    }

    private void ReadChunked(in ErofsInode inode, long offset, Span<byte> target)
    {
        bool indexes = (inode.U & 0x20) != 0;
        int blkBits = (int)(inode.U & 0x1F);
        if (_ext is null && blkBits > 31 - 12)
        {
            Data.Throw(RafsErrorKind.InvalidInode, $"nid {inode.Nid} has chunk blkbits {blkBits}");
        }

        // RAFS v6 splits files by the superblock chunk size, not the inode's blkbits (which may describe one
        // big chunk to the kernel when the whole file is contiguous).
        long chunkSize = _ext is not null ? _ext.ChunkSize : (long)BlockSize << blkBits;
        if (_ext is not null && !indexes)
        {
            Data.Throw(RafsErrorKind.InvalidInode, $"RAFS v6 file nid {inode.Nid} has no chunk indexes");
        }

        int unit = indexes ? 8 : 4;
        long tableStart = (inode.TailOffset + unit - 1) / unit * unit;
        long end = offset + target.Length;
        long firstChunk = offset / chunkSize;
        long lastChunk = (end - 1) / chunkSize;
        long chunkCount = ((long)inode.Size + chunkSize - 1) / chunkSize;
        Data.Check(tableStart, chunkCount * unit, "chunk index table");

        target.Clear();
        int capacity = (int)Math.Min(lastChunk - firstChunk + 1, MaxChunksPerRead);
        ChunkRequest[] requests = ArrayPool<ChunkRequest>.Shared.Rent(capacity);
        int used = 0;
        try
        {
            for (long k = firstChunk; k <= lastChunk; k++)
            {
                long chunkStart = k * chunkSize;
                int sliceStart = (int)(Math.Max(offset, chunkStart) - chunkStart);
                int sliceEnd = (int)(Math.Min(end, chunkStart + chunkSize) - chunkStart);
                int destination = (int)(chunkStart + sliceStart - offset);
                long entry = tableStart + k * unit;
                if (!indexes)
                {
                    uint blockAddress = Data.U32(entry, "chunk block map");
                    if (blockAddress != NullAddress)
                    {
                        CopyFromImage(blockAddress, sliceStart, target.Slice(destination, sliceEnd - sliceStart));
                    }

                    continue;
                }

                ReadOnlySpan<byte> index = Data.Span(entry, 8, "chunk index");
                ushort low = BinaryPrimitives.ReadUInt16LittleEndian(index);
                ushort deviceId = BinaryPrimitives.ReadUInt16LittleEndian(index.Slice(2));
                uint blkAddr = BinaryPrimitives.ReadUInt32LittleEndian(index.Slice(4));
                if (blkAddr == NullAddress && _ext is null)
                {
                    continue;
                }

                if (used == requests.Length)
                {
                    Data.Throw(RafsErrorKind.InvalidChunk, $"nid {inode.Nid} needs more than {requests.Length} chunks in one read");
                }

                if (_ext is not null)
                {
                    requests[used++] = RafsChunkRequest(in inode, low, deviceId, sliceStart, sliceEnd, destination);
                    continue;
                }

                int device = deviceId & (int)(BitOperations.RoundUpToPowerOf2((uint)_sb.ExtraDevices + 1) - 1);
                if (device == 0)
                {
                    CopyFromImage(blkAddr, sliceStart, target.Slice(destination, sliceEnd - sliceStart));
                    continue;
                }

                // Raw device data: read just the slice that is wanted.
                BlobRef blob = DeviceBlob(device);
                requests[used++] = new ChunkRequest
                {
                    Blob = blob,
                    ChunkIndex = (uint)k,
                    CompressedOffset = (long)blkAddr * BlockSize + sliceStart,
                    CompressedSize = sliceEnd - sliceStart,
                    UncompressedSize = sliceEnd - sliceStart,
                    IsCompressed = false,
                    SliceStart = 0,
                    SliceLength = sliceEnd - sliceStart,
                    DestinationOffset = destination,
                };
            }

            Options.ChunkReader.Read(requests.AsSpan(0, used), target, Options.ValidateDigests, Options.MergeSize);
        }
        finally
        {
            ArrayPool<ChunkRequest>.Shared.Return(requests, clearArray: true);
        }
    }

    /// <summary>Chunk data kept in the image itself: read in place, straight into the reply.</summary>
    private void CopyFromImage(uint blockAddress, int sliceStart, Span<byte> target) =>
        Data.Read((long)blockAddress * BlockSize + sliceStart, target, "chunk data");

    private ChunkRequest RafsChunkRequest(in ErofsInode inode, ushort low, ushort deviceId, int sliceStart, int sliceEnd,
        int destination)
    {
        // RAFS v6 chunk address: device_id low byte = blob index + 1, high byte + advise = 24-bit chunk index.
        int blobIndex = (deviceId & 0xFF) - 1;
        uint chunkIndex = ((uint)(deviceId >> 8) << 16) | low;
        if (blobIndex < 0 || blobIndex >= _blobEntries.Length)
        {
            Data.Throw(RafsErrorKind.InvalidChunk, $"nid {inode.Nid} has a chunk in blob index {blobIndex} " +
                $"(blob table has {_blobEntries.Length})");
        }

        RafsV6BlobEntry entry = _blobEntries[blobIndex];
        BlobRef blob = _blobs[blobIndex] ?? throw new StorageException(StorageErrorKind.BlobNotFound,
            $"no blob backend configured for blob {entry.BlobId} of {Path}");
        BlobChunkInfo info = ChunkInfo(blobIndex, chunkIndex);
        if (info.IsUnsupported || (entry.Features & (RafsV6BlobEntry.FeatureZran | RafsV6BlobEntry.FeatureBatch
                | RafsV6BlobEntry.FeatureEncrypted | RafsV6BlobEntry.FeatureSeparate)) != 0)
        {
            throw new StorageException(StorageErrorKind.Unsupported,
                $"chunk {chunkIndex} of blob {entry.BlobId} is zran, batch, encrypted or in a separate blob (features " +
                $"0x{entry.Features:x}), which is not supported");
        }

        if (info.UncompressedSize > V5.RafsV5SuperBlock.MaxChunkSize || info.CompressedSize <= 0
            || info.CompressedSize > 2 * V5.RafsV5SuperBlock.MaxChunkSize)
        {
            Data.Throw(RafsErrorKind.InvalidChunk, $"chunk {chunkIndex} of blob {entry.BlobId} has impossible sizes");
        }

        sliceEnd = Math.Min(sliceEnd, info.UncompressedSize);
        sliceStart = Math.Min(sliceStart, sliceEnd);
        ReadOnlyMemory<byte> digest = default;
        uint crc = info.Crc32;
        bool hasCrc = info.HasCrc32;
        if (Options.ValidateDigests && ChunkTableRecord(blobIndex, chunkIndex) is long record)
        {
            digest = Data.Memory(record, 32, "chunk table digest");
        }

        return new ChunkRequest
        {
            Blob = blob,
            ChunkIndex = chunkIndex,
            CompressedOffset = info.CompressedOffset,
            CompressedSize = info.IsCompressed ? info.CompressedSize : info.UncompressedSize,
            UncompressedSize = info.UncompressedSize,
            IsCompressed = info.IsCompressed,
            Digest = digest,
            HasCrc32 = hasCrc,
            Crc32 = crc,
            SliceStart = sliceStart,
            SliceLength = sliceEnd - sliceStart,
            DestinationOffset = destination,
        };
    }

    private BlobChunkInfo ChunkInfo(int blobIndex, uint chunkIndex)
    {
        RafsV6BlobEntry entry = _blobEntries[blobIndex];
        if (entry.ChunkInfoCompressedSize == 0)
        {
            return ChunkInfoFromChunkTable(blobIndex, chunkIndex);
        }

        BlobChunkInfoArray? array = Volatile.Read(ref _chunkInfos[blobIndex]);
        if (array is null)
        {
            lock (_loadLock)
            {
                array = _chunkInfos[blobIndex];
                if (array is null)
                {
                    array = BlobChunkInfoArray.Load(_blobs[blobIndex]!, entry.ChunkInfoOffset, entry.ChunkInfoCompressedSize,
                        entry.ChunkInfoUncompressedSize, entry.ChunkInfoCompression, entry.ChunkCount, entry.ChunkInfoV2);
                    Volatile.Write(ref _chunkInfos[blobIndex], array);
                }
            }
        }

        if (!array.TryGet(chunkIndex, out BlobChunkInfo info))
        {
            Data.Throw(RafsErrorKind.InvalidChunk,
                $"chunk index {chunkIndex} past the {array.Count} chunks of blob {entry.BlobId}");
        }

        return info;
    }

    /// <summary>Older images without blob meta: take the chunk location from the bootstrap chunk table.</summary>
    private BlobChunkInfo ChunkInfoFromChunkTable(int blobIndex, uint chunkIndex)
    {
        if (ChunkTableRecord(blobIndex, chunkIndex) is not long record)
        {
            throw new RafsException(RafsErrorKind.InvalidBlobMeta,
                $"blob {_blobEntries[blobIndex].BlobId} has no chunk-info array and chunk {chunkIndex} is not in the " +
                $"chunk table of {Path}");
        }

        ReadOnlySpan<byte> r = Data.Span(record, 80, "chunk table record");
        uint flags = BinaryPrimitives.ReadUInt32LittleEndian(r.Slice(36));
        return new BlobChunkInfo(
            (long)Math.Min(BinaryPrimitives.ReadUInt64LittleEndian(r.Slice(48)), long.MaxValue / 4),
            (int)Math.Min(BinaryPrimitives.ReadUInt32LittleEndian(r.Slice(40)), int.MaxValue),
            (long)Math.Min(BinaryPrimitives.ReadUInt64LittleEndian(r.Slice(56)), long.MaxValue / 4),
            (int)Math.Min(BinaryPrimitives.ReadUInt32LittleEndian(r.Slice(44)), int.MaxValue),
            (flags & 0x1) != 0,
            (flags & 0x10) != 0,
            BinaryPrimitives.ReadUInt32LittleEndian(r.Slice(76)),
            (flags & (0x4 | 0x8)) != 0);
    }

    private long? ChunkTableRecord(int blobIndex, uint chunkIndex)
    {
        Dictionary<(int, uint), long>? index = Volatile.Read(ref _chunkTableIndex);
        if (index is null)
        {
            lock (_loadLock)
            {
                index = _chunkTableIndex;
                if (index is null)
                {
                    index = new Dictionary<(int, uint), long>();
                    long records = _ext!.ChunkTableSize / 80;
                    for (long i = 0; i < records; i++)
                    {
                        long record = _ext.ChunkTableOffset + i * 80;
                        int blob = (int)Data.U32(record + 32, "chunk table blob_index");
                        uint chunk = Data.U32(record + 72, "chunk table index");
                        index.TryAdd((blob, chunk), record);
                    }

                    Volatile.Write(ref _chunkTableIndex, index);
                }
            }
        }

        return index.TryGetValue((blobIndex, chunkIndex), out long found) ? found : null;
    }

    private BlobRef DeviceBlob(int device)
    {
        if (device > _blobs.Length || _blobs[device - 1] is not BlobRef blob)
        {
            throw new StorageException(StorageErrorKind.BlobNotFound,
                $"no file configured for EROFS extra device {device} of {Path} ({_sb.ExtraDevices} devices in the table)");
        }

        return blob;
    }

    /// <summary>
    /// Plain EROFS extra devices: a tagged slot is a blob id read through the backend; an untagged one (mkfs.erofs
    /// --blobdev) is the configured device file at the same position.
    /// </summary>
    private BlobRef?[] LoadDevices(ImageData data, BlobSource source)
    {
        int count = _sb.ExtraDevices;
        var devices = new BlobRef?[count];
        if (count == 0)
        {
            return devices;
        }

        long tableOffset = (long)_sb.DeviceTableSlotOffset * 128;
        data.Check(tableOffset, (long)count * 128, "device table");
        int untagged = 0;
        for (int i = 0; i < count; i++)
        {
            string tag = DeviceTag(data, tableOffset + (long)i * 128);
            string? named = tag.Length > 0 ? tag : untagged < source.DeviceBlobIds.Count ? source.DeviceBlobIds[untagged] : null;
            if (tag.Length == 0) untagged++;
            if (i < source.DevicePaths.Count)
            {
                var backend = LocalFsBackend.ForFile(source.DevicePaths[i]);
                _owned.Add(backend);
                devices[i] = new BlobRef(source.DevicePaths[i], backend, CompressionAlgorithm.None, DigestAlgorithm.Sha256);
            }
            else if (named is not null && source.Backend is not null)
            {
                devices[i] = new BlobRef(named, source.Backend, CompressionAlgorithm.None, DigestAlgorithm.Sha256);
            }
        }

        return devices;
    }

    /// <summary>A device slot's tag (its blob id), "" when untagged.</summary>
    private static string DeviceTag(ImageData data, long slot)
    {
        ReadOnlySpan<byte> tag = data.Span(slot, 64, "device tag");
        int nul = tag.IndexOf((byte)0);
        return System.Text.Encoding.ASCII.GetString(nul < 0 ? tag : tag[..nul]);
    }

    /// <summary>The tags of the device table in slot order ("" for an untagged slot): for the blob cache manager.</summary>
    internal IReadOnlyList<string> DeviceTags()
    {
        long tableOffset = (long)_sb.DeviceTableSlotOffset * 128;
        Data.Check(tableOffset, (long)_sb.ExtraDevices * 128, "device table");
        var tags = new string[_sb.ExtraDevices];
        for (int i = 0; i < tags.Length; i++) tags[i] = DeviceTag(Data, tableOffset + (long)i * 128);
        return tags;
    }

    private static InodeType FileTypeToInodeType(byte fileType) => fileType switch
    {
        1 => InodeType.Regular,
        2 => InodeType.Directory,
        3 => InodeType.CharDevice,
        4 => InodeType.BlockDevice,
        5 => InodeType.Fifo,
        6 => InodeType.Socket,
        7 => InodeType.Symlink,
        _ => InodeType.Unknown,
    };

    /// <summary>One directory block: 12-byte dirents (nid, nameoff, file_type) then their names.</summary>
    private readonly ref struct DirentBlock
    {
        private readonly ReadOnlySpan<byte> _bytes;
        private readonly ImageData _data;
        private readonly ulong _dirNid;

        public DirentBlock(ErofsImage image, in ErofsInode dir, long block)
        {
            _bytes = image.FlatBlock(in dir, block);
            _data = image.Data;
            _dirNid = dir.Nid;
            if (_bytes.Length < DirentSize)
            {
                Fail("is shorter than one dirent");
            }

            int firstNameOffset = BinaryPrimitives.ReadUInt16LittleEndian(_bytes.Slice(8));
            if (firstNameOffset < DirentSize || firstNameOffset % DirentSize != 0 || firstNameOffset > _bytes.Length)
            {
                Fail($"has invalid first nameoff {firstNameOffset}");
            }

            Count = firstNameOffset / DirentSize;
        }

        public int Count { get; }

        public ulong Nid(int i) => BinaryPrimitives.ReadUInt64LittleEndian(_bytes.Slice(i * DirentSize));

        public byte FileType(int i) => _bytes[i * DirentSize + 10];

        public ReadOnlySpan<byte> Name(int i)
        {
            int start = BinaryPrimitives.ReadUInt16LittleEndian(_bytes.Slice(i * DirentSize + 8));
            int end;
            if (i + 1 < Count)
            {
                end = BinaryPrimitives.ReadUInt16LittleEndian(_bytes.Slice((i + 1) * DirentSize + 8));
            }
            else
            {
                // The last name runs to the first NUL or the end of the block.
                end = _bytes.Length;
                if (start <= end)
                {
                    int nul = _bytes.Slice(start).IndexOf((byte)0);
                    if (nul >= 0)
                    {
                        end = start + nul;
                    }
                }
            }

            if (start < Count * DirentSize || end > _bytes.Length || end <= start || end - start > MaxNameLength)
            {
                Fail($"has an invalid name range [{start}, {end}) for dirent {i}");
            }

            return _bytes.Slice(start, end - start);
        }

        private void Fail(string what) =>
            _data.Throw(RafsErrorKind.InvalidDirectory, $"directory block of nid {_dirNid} {what}");
    }

    /// <summary>Walks shared then inline xattr entries of an inode (erofs_fs.h <c>erofs_xattr_entry</c>).</summary>
    private ref struct XattrEntries
    {
        private readonly ErofsImage _image;
        private readonly ReadOnlySpan<byte> _body;
        private readonly int _sharedCount;
        private int _shared;
        private int _pos;

        public XattrEntries(ErofsImage image, in ErofsInode inode)
        {
            _image = image;
            _body = inode.XattrSize == 0
                ? ReadOnlySpan<byte>.Empty
                : image.Data.Span(inode.Offset + (inode.Extended ? 64 : 32), inode.XattrSize, "xattr body");
            _sharedCount = _body.IsEmpty ? 0 : _body[4];
            if (!_body.IsEmpty && 12 + _sharedCount * 4 > _body.Length)
            {
                image.Data.Throw(RafsErrorKind.InvalidInode, $"nid {inode.Nid} has {_sharedCount} shared xattrs beyond its body");
            }

            _shared = 0;
            _pos = _body.IsEmpty ? 0 : 12 + _sharedCount * 4;
        }

        public bool MoveNext(out ReadOnlySpan<byte> prefix, out ReadOnlySpan<byte> suffix, out ReadOnlySpan<byte> value)
        {
            while (true)
            {
                ReadOnlySpan<byte> entry;
                if (_shared < _sharedCount)
                {
                    // RAFS v6 has no shared xattrs (upstream ignores the ids); plain EROFS keeps them in the shared area.
                    uint id = BinaryPrimitives.ReadUInt32LittleEndian(_body.Slice(12 + _shared * 4));
                    _shared++;
                    long at = (long)_image._sb.XattrBlockAddress * _image.BlockSize + (long)id * 4;
                    ReadOnlySpan<byte> header = _image.Data.Span(at, 4, "shared xattr header");
                    int size = 4 + header[0] + BinaryPrimitives.ReadUInt16LittleEndian(header.Slice(2));
                    entry = ReadEntry(_image.Data.Span(at, size, "shared xattr"), out _);
                }
                else if (_body.Length - _pos >= 4)
                {
                    entry = ReadEntry(_body.Slice(_pos), out int consumed);
                    _pos += (consumed + 3) & ~3;
                }
                else
                {
                    prefix = suffix = value = default;
                    return false;
                }

                byte nameLength = entry[0];
                byte nameIndex = entry[1];
                suffix = entry.Slice(4, nameLength);
                value = entry.Slice(4 + nameLength);
                prefix = Prefix(nameIndex);
                if (nameIndex != 0 && (nameIndex <= 6))
                {
                    return true;
                }
            }
        }

        private ReadOnlySpan<byte> ReadEntry(ReadOnlySpan<byte> at, out int consumed)
        {
            if (at.Length < 4)
            {
                _image.Data.Throw(RafsErrorKind.InvalidInode, "xattr entry header past the end of its area");
            }

            consumed = 4 + at[0] + BinaryPrimitives.ReadUInt16LittleEndian(at.Slice(2));
            if (consumed > at.Length)
            {
                _image.Data.Throw(RafsErrorKind.InvalidInode, $"xattr entry of {consumed} bytes overruns its area");
            }

            return at.Slice(0, consumed);
        }

        private static ReadOnlySpan<byte> Prefix(byte index) => index switch
        {
            1 => "user."u8,
            2 => "system.posix_acl_access"u8,
            3 => "system.posix_acl_default"u8,
            4 => "trusted."u8,
            5 => "lustre."u8,
            6 => "security."u8,
            _ => ReadOnlySpan<byte>.Empty,
        };
    }
}
