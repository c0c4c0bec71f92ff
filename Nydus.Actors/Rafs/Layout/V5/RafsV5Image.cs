using System.Buffers;
using System.Buffers.Binary;
using System.Text;
using Nydus.Actors.Rafs.Metadata;
using Nydus.Actors.Storage;

namespace Nydus.Actors.Rafs.Layout.V5;

/// <summary>
/// A RAFS v5 bootstrap (rafs/src/metadata/direct_v5.rs). Inode number n lives in inode-table slot n-1; hard
/// links have their own slots but report the first link's i_ino. Children of a directory occupy consecutive
/// inode indexes sorted by name, so lookup is a binary search.
/// </summary>
internal sealed class RafsV5Image : RafsImage
{
    private const int MaxChunksPerRead = 4096;
    private const ulong BlobChunkCompressed = 0x1;
    private const ulong BlobChunkEncrypted = 0x4;
    private const ulong BlobChunkBatch = 0x8;
    private const ulong BlobChunkHasCrc32 = 0x10;

    private readonly RafsV5SuperBlock _sb;
    private readonly string[] _blobIds;
    private readonly BlobRef?[] _blobs;

    public override IReadOnlyList<BlobRef> Blobs { get; }

    public RafsV5Image(ImageData data, BlobSource blobs, RafsOpenOptions options)
        : base(data, options)
    {
        _sb = RafsV5SuperBlock.Load(data);
        _blobIds = LoadBlobTable(data, _sb);
        _blobs = new BlobRef?[_blobIds.Length];
        for (int i = 0; i < _blobIds.Length; i++)
        {
            _blobs[i] = blobs.Backend is null
                ? null
                : new BlobRef(_blobIds[i], blobs.Backend, _sb.Flags.Compression(), _sb.Flags.Digest());
        }

        Blobs = PresentBlobs(_blobs);

        // Like upstream, opening loads only the superblock and tables; inode records are checked when used,
        // except that the root record must at least lie inside the file.
        uint rootSlot = data.U32(_sb.InodeTableOffset, "root inode table slot");
        data.Check((long)rootSlot << 3, RafsV5Inode.RecordSize, "root inode record");
    }

    public override RafsFormat Format => RafsFormat.RafsV5;

    public override RafsSuperMeta SuperMeta => new()
    {
        Magic = RafsV5SuperBlock.Magic,
        Version = RafsV5SuperBlock.Version,
        SbSize = RafsV5SuperBlock.Size,
        ChunkSize = _sb.ChunkSize,
        Flags = new RafsFlagBits((ulong)_sb.Flags),
        InodesCount = _sb.InodesCount,
        InodeTableEntries = _sb.InodeTableEntries,
        InodeTableOffset = (ulong)_sb.InodeTableOffset,
        BlobTableOffset = (ulong)_sb.BlobTableOffset,
        BlobTableSize = _sb.BlobTableSize,
        ExtendedBlobTableOffset = (ulong)_sb.ExtendedBlobTableOffset,
        ExtendedBlobTableEntries = _sb.ExtendedBlobTableEntries,
        PrefetchTableEntries = _sb.PrefetchTableEntries,
        PrefetchTableOffset = (ulong)_sb.PrefetchTableOffset,
    };

    public override ulong RootInode => 1;

    public override bool HasXattrs => (_sb.Flags & RafsSuperFlags.HasXattr) != 0;

    public override ulong InodeCount => _sb.InodesCount;

    public IReadOnlyList<string> BlobIds => _blobIds;

    public override IReadOnlyList<string> DataBlobIds => _blobIds;

    public uint ChunkSize => _sb.ChunkSize;

    public override InodeAttr GetAttr(ulong ino)
    {
        RafsV5Inode inode = LoadByIndex(ino);
        bool explicitIds = (_sb.Flags & RafsSuperFlags.ExplicitUidGid) != 0;
        return new InodeAttr
        {
            Ino = inode.Ino,
            Mode = inode.Mode,
            Uid = explicitIds ? inode.Uid : Options.DefaultUid,
            Gid = explicitIds ? inode.Gid : Options.DefaultGid,
            Size = inode.Size,
            NLink = inode.NLink,
            // i_mtime is a u64 holding the signed seconds: before 1970 is negative.
            MtimeSeconds = unchecked((long)inode.Mtime),
            MtimeNanoseconds = inode.MtimeNanoseconds,
            Rdev = inode.Rdev,
            Blocks = inode.Blocks,
        };
    }

    public override bool TryLookup(ulong parent, ReadOnlySpan<byte> name, out ulong ino)
    {
        RafsV5Inode dir = LoadByIndex(parent);
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

        if (name.SequenceEqual(".."u8))
        {
            ino = ParentOf(parent, in dir);
            return true;
        }

        (uint first, uint count) = ChildRange(parent, in dir);
        long lo = 0;
        long hi = (long)count - 1;
        while (lo <= hi)
        {
            long mid = lo + ((hi - lo) >> 1);
            RafsV5Inode child = LoadByIndex(first + (ulong)mid);
            int cmp = child.Name(Data).SequenceCompareTo(name);
            if (cmp == 0)
            {
                ino = CheckedIno(in child);
                return true;
            }

            if (cmp < 0)
            {
                lo = mid + 1;
            }
            else
            {
                hi = mid - 1;
            }
        }

        return false;
    }

    public override void ReadDir<TSink>(ulong ino, long offset, ref TSink sink)
    {
        RafsV5Inode dir = LoadByIndex(ino);
        if (!dir.IsDirectory)
        {
            Data.Throw(RafsErrorKind.InvalidInode, $"readdir of inode {ino}, which is not a directory");
        }

        if (offset <= 0 && !sink.TryAdd("."u8, ino, InodeType.Directory, 1))
        {
            return;
        }

        if (offset <= 1 && !sink.TryAdd(".."u8, ParentOf(ino, in dir), InodeType.Directory, 2))
        {
            return;
        }

        (uint first, uint count) = ChildRange(ino, in dir);
        for (long k = Math.Max(0, offset - 2); k < count; k++)
        {
            RafsV5Inode child = LoadByIndex(first + (ulong)k);
            if (!sink.TryAdd(child.Name(Data), CheckedIno(in child), (InodeType)(child.Type >> 12), k + 3))
            {
                return;
            }
        }
    }

    public override int ReadLink(ulong ino, Span<byte> destination)
    {
        RafsV5Inode inode = LoadByIndex(ino);
        if (!inode.IsSymlink)
        {
            Data.Throw(RafsErrorKind.InvalidInode, $"readlink of inode {ino}, which is not a symlink");
        }

        ReadOnlySpan<byte> target = Data.Span(inode.SymlinkOffset, inode.SymlinkSize, "symlink target");
        if (target.Length <= destination.Length)
        {
            target.CopyTo(destination);
        }

        return target.Length;
    }

    public override int ListXattrs(ulong ino, Span<byte> destination)
    {
        RafsV5Inode inode = LoadByIndex(ino);
        int needed = 0;
        var pairs = new XattrPairs(Data, in inode);
        while (pairs.MoveNext(out ReadOnlySpan<byte> name, out _))
        {
            if (needed + name.Length + 1 <= destination.Length)
            {
                name.CopyTo(destination.Slice(needed));
                destination[needed + name.Length] = 0;
            }

            needed += name.Length + 1;
        }

        return needed;
    }

    public override int GetXattr(ulong ino, ReadOnlySpan<byte> name, Span<byte> destination)
    {
        RafsV5Inode inode = LoadByIndex(ino);
        var pairs = new XattrPairs(Data, in inode);
        while (pairs.MoveNext(out ReadOnlySpan<byte> pairName, out ReadOnlySpan<byte> value))
        {
            if (pairName.SequenceEqual(name))
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

    public override IReadOnlyList<ulong> PrefetchTable => LoadPrefetchTable();

    private ulong[] LoadPrefetchTable() => Data.PrefetchInodes(_sb.PrefetchTableOffset, _sb.PrefetchTableEntries);

    public override void CollectChunkRanges(ulong ino, List<BlobRange> ranges)
    {
        RafsV5Inode inode = LoadByIndex(ino);
        if (!inode.IsRegular)
        {
            return;
        }

        uint chunkCount = inode.ChunkCount();
        for (long k = 0; k < chunkCount; k++)
        {
            long recordOffset = inode.ChunkOffset + k * RafsV5Inode.ChunkRecordSize;
            ReadOnlySpan<byte> record = Data.Span(recordOffset, RafsV5Inode.ChunkRecordSize, "chunk record");
            uint uncompressedSize = BinaryPrimitives.ReadUInt32LittleEndian(record.Slice(44));
            if (uncompressedSize == 0)
            {
                continue;
            }

            ulong fileOffset = BinaryPrimitives.ReadUInt64LittleEndian(record.Slice(64));
            ChunkRequest chunk = BuildRequest(ino, record, recordOffset, (long)fileOffset, (long)fileOffset + uncompressedSize,
                fileOffset, uncompressedSize);
            ranges.Add(new BlobRange(chunk.Blob, chunk.CompressedOffset, chunk.CompressedSize));
        }
    }

    public override int Read(ulong ino, long offset, Span<byte> destination)
    {
        RafsV5Inode inode = LoadByIndex(ino);
        if (!inode.IsRegular)
        {
            Data.Throw(RafsErrorKind.InvalidInode, $"read of inode {ino}, which is not a regular file");
        }

        ulong size = inode.Size;
        if (offset < 0 || (ulong)offset >= size || destination.IsEmpty)
        {
            return 0;
        }

        int length = (int)Math.Min((ulong)destination.Length, size - (ulong)offset);
        Span<byte> target = destination.Slice(0, length);
        long end = offset + length;
        uint chunkCount = inode.ChunkCount();
        Data.Check(inode.ChunkOffset, (long)chunkCount * RafsV5Inode.ChunkRecordSize, "chunk records");

        // Without holes chunk k covers [k * chunk_size, ...); with HAS_HOLE any record may cover any range.
        long firstRecord = 0;
        long endRecord = chunkCount;
        if ((inode.Flags & RafsV5Inode.FlagHasHole) == 0)
        {
            firstRecord = Math.Min(offset / _sb.ChunkSize, chunkCount);
            endRecord = Math.Min((end - 1) / _sb.ChunkSize + 1, chunkCount);
        }

        // Bytes no record covers read as zeros (sparse), so start from a cleared buffer.
        target.Clear();
        int capacity = (int)Math.Min(endRecord - firstRecord, MaxChunksPerRead);
        ChunkRequest[] requests = ArrayPool<ChunkRequest>.Shared.Rent(Math.Max(capacity, 1));
        int used = 0;
        try
        {
            for (long k = firstRecord; k < endRecord; k++)
            {
                long recordOffset = inode.ChunkOffset + k * RafsV5Inode.ChunkRecordSize;
                ReadOnlySpan<byte> record = Data.Span(recordOffset, RafsV5Inode.ChunkRecordSize, "chunk record");
                ulong fileOffset = BinaryPrimitives.ReadUInt64LittleEndian(record.Slice(64));
                uint uncompressedSize = BinaryPrimitives.ReadUInt32LittleEndian(record.Slice(44));
                ulong chunkEnd = fileOffset + uncompressedSize;
                if (chunkEnd <= (ulong)offset || fileOffset >= (ulong)end || uncompressedSize == 0)
                {
                    continue;
                }

                if (used == requests.Length)
                {
                    // More overlapping records than a read can have without overlap in the records themselves.
                    Data.Throw(RafsErrorKind.InvalidChunk, $"inode {ino} has more than {requests.Length} chunks in one read");
                }

                requests[used++] = BuildRequest(ino, record, recordOffset, offset, end, fileOffset, uncompressedSize);
            }

            Options.ChunkReader.Read(requests.AsSpan(0, used), target, Options.ValidateDigests, Options.MergeSize);
        }
        finally
        {
            ArrayPool<ChunkRequest>.Shared.Return(requests, clearArray: true);
        }

        return length;
    }

    private ChunkRequest BuildRequest(ulong ino, ReadOnlySpan<byte> record, long recordOffset, long readStart,
        long readEnd, ulong fileOffset, uint uncompressedSize)
    {
        uint blobIndex = BinaryPrimitives.ReadUInt32LittleEndian(record.Slice(32));
        uint flags = BinaryPrimitives.ReadUInt32LittleEndian(record.Slice(36));
        uint compressedSize = BinaryPrimitives.ReadUInt32LittleEndian(record.Slice(40));
        ulong compressedOffset = BinaryPrimitives.ReadUInt64LittleEndian(record.Slice(48));
        uint chunkIndex = BinaryPrimitives.ReadUInt32LittleEndian(record.Slice(72));
        uint crc = BinaryPrimitives.ReadUInt32LittleEndian(record.Slice(76));

        if (blobIndex >= (uint)_blobIds.Length)
        {
            Data.Throw(RafsErrorKind.InvalidChunk,
                $"chunk record at 0x{recordOffset:x} of inode {ino} has blob_index {blobIndex} (blob table has {_blobIds.Length})");
        }

        if (uncompressedSize > RafsV5SuperBlock.MaxChunkSize || compressedSize > 2 * RafsV5SuperBlock.MaxChunkSize
            || compressedOffset > long.MaxValue / 2)
        {
            Data.Throw(RafsErrorKind.InvalidChunk,
                $"chunk record at 0x{recordOffset:x} of inode {ino} has impossible sizes " +
                $"(compressed {compressedSize} at {compressedOffset}, uncompressed {uncompressedSize})");
        }

        BlobRef blob = _blobs[blobIndex] ?? throw new StorageException(StorageErrorKind.BlobNotFound,
            $"no blob backend configured for blob {_blobIds[blobIndex]} of {Path}");
        if ((flags & (BlobChunkEncrypted | BlobChunkBatch)) != 0)
        {
            throw new StorageException(StorageErrorKind.Unsupported,
                $"chunk {chunkIndex} of blob {blob.Id} is encrypted or batched (flags 0x{flags:x}), which is not supported");
        }

        long sliceStart = Math.Max(readStart, (long)fileOffset) - (long)fileOffset;
        long sliceEnd = Math.Min(readEnd, (long)(fileOffset + uncompressedSize)) - (long)fileOffset;
        bool compressed = (flags & BlobChunkCompressed) != 0;
        return new ChunkRequest
        {
            Blob = blob,
            ChunkIndex = chunkIndex,
            CompressedOffset = (long)compressedOffset,
            CompressedSize = compressed ? (int)compressedSize : (int)uncompressedSize,
            UncompressedSize = (int)uncompressedSize,
            IsCompressed = compressed,
            Digest = Data.Memory(recordOffset, 32, "chunk digest"),
            HasCrc32 = (flags & BlobChunkHasCrc32) != 0,
            Crc32 = crc,
            SliceStart = (int)sliceStart,
            SliceLength = (int)(sliceEnd - sliceStart),
            DestinationOffset = (int)((long)fileOffset + sliceStart - readStart),
        };
    }

    /// <summary>Loads the record in inode-table slot <c>index - 1</c>.</summary>
    private RafsV5Inode LoadByIndex(ulong index)
    {
        if (index == 0 || index > _sb.InodeTableEntries)
        {
            throw new RafsException(RafsErrorKind.NoSuchInode,
                $"inode {index} is outside the inode table (1..{_sb.InodeTableEntries}) of {Path}");
        }

        uint slot = Data.U32(_sb.InodeTableOffset + (long)(index - 1) * 4, "inode table slot");
        if (slot == 0)
        {
            throw new RafsException(RafsErrorKind.NoSuchInode, $"inode {index} has an empty inode table slot in {Path}");
        }

        long offset = (long)slot << 3;
        if (offset < RafsV5SuperBlock.Size)
        {
            Data.Throw(RafsErrorKind.InvalidInode, $"inode {index} record offset 0x{offset:x} points into the superblock");
        }

        return new RafsV5Inode(Data, offset);
    }

    private ulong ParentOf(ulong ino, in RafsV5Inode dir) => dir.Parent == 0 || ino == 1 ? 1 : dir.Parent;

    private ulong CheckedIno(in RafsV5Inode inode)
    {
        if (inode.Ino == 0 || inode.Ino > _sb.InodeTableEntries)
        {
            Data.Throw(RafsErrorKind.InvalidInode,
                $"inode record at 0x{inode.Offset:x} has i_ino {inode.Ino} outside the inode table");
        }

        return inode.Ino;
    }

    /// <summary>
    /// The child index range of a directory. Children always come after their parent in the table, which makes
    /// the tree acyclic: a directory whose children start at or before itself is rejected instead of looping.
    /// </summary>
    private (uint First, uint Count) ChildRange(ulong index, in RafsV5Inode dir)
    {
        if (dir.ChildCount == 0)
        {
            return (0, 0);
        }

        if (dir.ChildIndex <= index || (ulong)dir.ChildIndex + dir.ChildCount - 1 > _sb.InodeTableEntries)
        {
            Data.Throw(RafsErrorKind.InvalidDirectory,
                $"directory inode {index} has children [{dir.ChildIndex}, +{dir.ChildCount}) that are not after it " +
                $"inside the inode table (1..{_sb.InodeTableEntries})");
        }

        return (dir.ChildIndex, dir.ChildCount);
    }

    private static string[] LoadBlobTable(ImageData data, RafsV5SuperBlock sb)
    {
        ReadOnlySpan<byte> table = data.Span(sb.BlobTableOffset, sb.BlobTableSize, "blob table");
        var ids = new List<string>();
        int pos = 0;
        // Entries: u32 readahead offset, u32 readahead size, id bytes up to '\0' (none after the last one).
        while (table.Length - pos >= 9)
        {
            pos += 8;
            int nul = table.Slice(pos).IndexOf((byte)0);
            int idLength = nul < 0 ? table.Length - pos : nul;
            ReadOnlySpan<byte> id = table.Slice(pos, idLength);
            if (idLength == 0 || idLength > 255)
            {
                data.Throw(RafsErrorKind.InvalidSuperBlock, $"blob table entry {ids.Count} has an id of {idLength} bytes");
            }

            ids.Add(Encoding.ASCII.GetString(id));
            pos += idLength + 1;
        }

        return ids.ToArray();
    }

    /// <summary>Walks the <c>u32 len, name \0 value</c> pairs of a v5 xattr area.</summary>
    private ref struct XattrPairs
    {
        private readonly ReadOnlySpan<byte> _area;
        private int _pos;

        public XattrPairs(ImageData data, in RafsV5Inode inode)
        {
            _area = (inode.Flags & RafsV5Inode.FlagXattr) == 0
                ? ReadOnlySpan<byte>.Empty
                : data.Span(inode.XattrOffset + 8, inode.XattrSize, "xattr area");
            _pos = 0;
        }

        public bool MoveNext(out ReadOnlySpan<byte> name, out ReadOnlySpan<byte> value)
        {
            name = default;
            value = default;
            if (_area.Length - _pos < 4)
            {
                return false;
            }

            uint pairLength = BinaryPrimitives.ReadUInt32LittleEndian(_area.Slice(_pos));
            _pos += 4;
            if (pairLength > (uint)(_area.Length - _pos))
            {
                throw new RafsException(RafsErrorKind.InvalidInode, $"xattr pair of {pairLength} bytes overruns the xattr area");
            }

            ReadOnlySpan<byte> pair = _area.Slice(_pos, (int)pairLength);
            _pos += (int)pairLength;
            int nul = pair.IndexOf((byte)0);
            if (nul <= 0)
            {
                throw new RafsException(RafsErrorKind.InvalidInode, "xattr pair without a name terminator");
            }

            name = pair.Slice(0, nul);
            value = pair.Slice(nul + 1);
            return true;
        }
    }
}
