using System.Buffers.Binary;
using System.Numerics;
using Microsoft.Win32.SafeHandles;

namespace Nydus.Actors.Storage.Cache;

/// <summary>
/// The cached part of one blob: a sparse data file holding the blob's bytes at their own offsets
/// (<c>&lt;blob&gt;.blob.data</c>) and a presence bitmap with one bit per block (<c>&lt;blob&gt;.chunk_map</c>).
/// <para>
/// The names are upstream's (storage/src/cache/filecache, state/indexed_chunk_map.rs), because nydus-snapshotter's
/// cache manager (pkg/cache/manager.go) measures and deletes a blob's cache by exactly these suffixes. The contents
/// are ours: the data file holds the blob as stored (upstream's <c>.blob.data</c> holds it uncompressed) and the map
/// has its own header, so an upstream map fails the header check and is thrown away with its data file, never
/// misread. Files of our first layout (<c>.raw.data</c>, <c>.raw.map</c>, same contents) are renamed on first use
/// (<see cref="MigrateLegacyNames"/>).
/// </para>
/// <para>
/// Map file layout (little-endian): magic "NYDRMAP1" (8 bytes), version u32 (1), block size u32, blob size u64,
/// then the bitmap, bit <c>i</c> = block <c>i</c> (least significant bit first). A map whose header does not
/// match is thrown away together with the data file.
/// </para>
/// <para>
/// Durability order: the map file only ever claims blocks whose data was flushed (fdatasync) before the claim was
/// written, so a crash can lose cached data (fetched again) but never make the map claim data that is not on disk.
/// Stored blocks are present for readers of this process at once (the in-memory bitmap); the flush and the map write
/// happen later in <see cref="Flush"/> (a timer of the work dir, and <see cref="Dispose"/>), off the read path: an
/// fdatasync per fetch cost 2-70 ms, often as much as the fetch itself.
/// </para>
/// </summary>
internal sealed class CachedBlobFile : IDisposable
{
    public const string DataSuffix = ".blob.data";
    public const string MapSuffix = ".chunk_map";
    /// <summary>Names of the first layout, same contents; renamed by <see cref="MigrateLegacyNames"/>.</summary>
    public const string LegacyDataSuffix = ".raw.data";
    public const string LegacyMapSuffix = ".raw.map";
    private const int HeaderSize = 24;
    private const uint Version = 1;
    private static ReadOnlySpan<byte> Magic => "NYDRMAP1"u8;

    private readonly SafeFileHandle _data;
    private readonly SafeFileHandle _map;
    private readonly byte[] _bits;
    /// <summary>What the map file says: a subset of <see cref="_bits"/> whose data is known to be on disk.</summary>
    private readonly byte[] _durable;
    /// <summary>Block ranges stored since the last <see cref="Flush"/> began (their data not yet flushed).</summary>
    private List<(long First, long Last)> _unflushed = new();
    /// <summary>Ranges invalidated while a flush runs; that flush must not claim them. Null when no flush runs.</summary>
    private List<(long First, long Last)>? _invalidatedDuringFlush;
    private readonly object _flushLock = new();
    private bool _disposed;
    private readonly List<Fetch> _fetches = new();
    private long _presentBlocks;

    /// <summary>
    /// Readers inside this blob right now; <see cref="int.MinValue"/> once eviction claimed it, which sends later
    /// readers to a fresh instance.
    /// </summary>
    public int Readers;

    /// <summary><see cref="System.Diagnostics.Stopwatch"/> timestamp of the last read, for LRU eviction (0: not read in this run).</summary>
    public long LastAccess;

    private CachedBlobFile(string blobId, string dataPath, string mapPath, SafeFileHandle data, SafeFileHandle map,
        long blobSize, int blockSize, byte[] bits)
    {
        BlobId = blobId;
        DataPath = dataPath;
        MapPath = mapPath;
        _data = data;
        _map = map;
        BlobSize = blobSize;
        BlockSize = blockSize;
        _bits = bits;
        _durable = (byte[])bits.Clone();
        foreach (byte b in bits)
        {
            _presentBlocks += BitOperations.PopCount(b);
        }
    }

    public string BlobId { get; }

    public string DataPath { get; }

    public string MapPath { get; }

    public long BlobSize { get; }

    public int BlockSize { get; }

    /// <summary>Next block a read-ahead would start at, the first block of the last one started (its trigger: a read
    /// reaching it starts the next), the read-aheads running, and the last block read. Guarded by <see cref="Lock"/>.</summary>
    internal long ReadAheadNext = -1, ReadAheadTrigger = -1, LastReadBlock = -1;

    internal int ReadAheadsRunning;

    /// <summary>Guards the bitmap and the list of running fetches.</summary>
    public object Lock => _fetches;

    public long PresentBytes => Interlocked.Read(ref _presentBlocks) * BlockSize;

    /// <summary>
    /// Opens the cache files of <paramref name="blobId"/>, or creates them empty. <paramref name="blobSize"/> is
    /// only asked for when there is no usable map, so a restarted daemon needs no backend round trip.
    /// </summary>
    public static CachedBlobFile Open(string workDir, string blobId, int blockSize, Func<long>? blobSize)
    {
        string dataPath = Path.Combine(workDir, blobId + DataSuffix);
        string mapPath = Path.Combine(workDir, blobId + MapSuffix);
        SafeFileHandle? map = null, data = null;
        try
        {
            MigrateLegacyNames(workDir, blobId);
            map = File.OpenHandle(mapPath, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.ReadWrite);
            long size = -1;
            byte[]? bits = TryLoad(map, blockSize, ref size);
            if (bits is null)
            {
                if (blobSize is null)
                {
                    throw new StorageException(StorageErrorKind.IoError, $"cache map {mapPath} of blob {blobId} is not usable");
                }

                // Stale or foreign files: start over, data first so no old bytes survive under a new map.
                size = blobSize();
                File.Delete(dataPath);
                bits = new byte[(BlocksOf(size, blockSize) + 7) / 8];
                RandomAccess.SetLength(map, 0);
                Span<byte> header = stackalloc byte[HeaderSize];
                Magic.CopyTo(header);
                BinaryPrimitives.WriteUInt32LittleEndian(header[8..], Version);
                BinaryPrimitives.WriteUInt32LittleEndian(header[12..], (uint)blockSize);
                BinaryPrimitives.WriteInt64LittleEndian(header[16..], size);
                RandomAccess.Write(map, header, 0);
                RandomAccess.Write(map, bits, HeaderSize);
                RandomAccess.FlushToDisk(map);
            }

            data = File.OpenHandle(dataPath, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.ReadWrite);
            return new CachedBlobFile(blobId, dataPath, mapPath, data, map, size, blockSize, bits);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            map?.Dispose();
            data?.Dispose();
            throw new StorageException(StorageErrorKind.IoError,
                $"cannot open cache files of blob {blobId} in {workDir}: {e.Message}", e);
        }
    }

    /// <summary>
    /// Renames the files of our first layout (<c>&lt;blob&gt;.raw.data</c> / <c>.raw.map</c>) to upstream's names,
    /// data first and the map last, so a crash in between leaves either the old map (migrated again next time) or
    /// the new one with its data in place. Files under the new names win: old ones beside them are deleted.
    /// </summary>
    internal static void MigrateLegacyNames(string workDir, string blobId)
    {
        string legacyMap = Path.Combine(workDir, blobId + LegacyMapSuffix);
        string legacyData = Path.Combine(workDir, blobId + LegacyDataSuffix);
        if (!File.Exists(legacyMap))
        {
            // A data file without its map claims nothing; the new name is recreated empty on open anyway.
            File.Delete(legacyData);
            return;
        }

        string map = Path.Combine(workDir, blobId + MapSuffix);
        if (File.Exists(map))
        {
            File.Delete(legacyData);
            File.Delete(legacyMap);
            return;
        }

        if (File.Exists(legacyData))
        {
            File.Move(legacyData, Path.Combine(workDir, blobId + DataSuffix), overwrite: true);
        }

        File.Move(legacyMap, map);
    }

    private static byte[]? TryLoad(SafeFileHandle map, int blockSize, ref long size)
    {
        long length = RandomAccess.GetLength(map);
        if (length < HeaderSize)
        {
            return null;
        }

        Span<byte> header = stackalloc byte[HeaderSize];
        if (RandomAccess.Read(map, header, 0) != HeaderSize || !header[..8].SequenceEqual(Magic)
            || BinaryPrimitives.ReadUInt32LittleEndian(header[8..]) != Version
            || BinaryPrimitives.ReadUInt32LittleEndian(header[12..]) != (uint)blockSize)
        {
            return null;
        }

        long blobSize = BinaryPrimitives.ReadInt64LittleEndian(header[16..]);
        long bitmapBytes = (BlocksOf(blobSize, blockSize) + 7) / 8;
        if (blobSize < 0 || length != HeaderSize + bitmapBytes || bitmapBytes > int.MaxValue)
        {
            return null;
        }

        var bits = new byte[bitmapBytes];
        if (RandomAccess.Read(map, bits, HeaderSize) != bits.Length)
        {
            return null;
        }

        size = blobSize;
        return bits;
    }

    private static long BlocksOf(long size, int blockSize) => (size + blockSize - 1) / blockSize;

    /// <summary>First missing block in [first, last], or -1. Caller holds <see cref="Lock"/>.</summary>
    public long FirstMissing(long first, long last)
    {
        for (long block = first; block <= last; block++)
        {
            if ((_bits[block >> 3] & (1 << (int)(block & 7))) == 0)
            {
                return block;
            }
        }

        return -1;
    }

    /// <summary>Last missing block in [first, last], or -1. Caller holds <see cref="Lock"/>.</summary>
    public long LastMissing(long first, long last)
    {
        for (long block = last; block >= first; block--)
        {
            if ((_bits[block >> 3] & (1 << (int)(block & 7))) == 0)
            {
                return block;
            }
        }

        return -1;
    }

    /// <summary>Number of blocks of the blob.</summary>
    public long BlockCount => BlocksOf(BlobSize, BlockSize);

    /// <summary>
    /// The last block of the run of missing blocks that starts at <paramref name="from"/>, at most
    /// <paramref name="maxLast"/>; <paramref name="from"/> - 1 when <paramref name="from"/> is present. Caller holds <see cref="Lock"/>.
    /// </summary>
    public long MissingRunEnd(long from, long maxLast)
    {
        long block = from;
        while (block <= maxLast && (_bits[block >> 3] & (1 << (int)(block & 7))) == 0)
        {
            block++;
        }

        return block - 1;
    }

    /// <summary>Whether block <paramref name="block"/> is present. Caller holds <see cref="Lock"/>.</summary>
    public bool IsPresent(long block) => (_bits[block >> 3] & (1 << (int)(block & 7))) != 0;

    /// <summary>A running fetch that overlaps [first, last], or null. Caller holds <see cref="Lock"/>.</summary>
    public Fetch? FindFetch(long first, long last)
    {
        foreach (Fetch fetch in _fetches)
        {
            if (fetch.FirstBlock <= last && first <= fetch.LastBlock)
            {
                return fetch;
            }
        }

        return null;
    }

    /// <summary>Registers a fetch of [first, last]. Caller holds <see cref="Lock"/>.</summary>
    public Fetch StartFetch(long first, long last, bool readAhead = false)
    {
        var fetch = new Fetch(first, last, readAhead);
        _fetches.Add(fetch);
        return fetch;
    }

    public void EndFetch(Fetch fetch, StorageException? failure)
    {
        lock (Lock)
        {
            _fetches.Remove(fetch);
        }

        fetch.Finish(failure);
    }

    /// <summary>
    /// Writes fetched bytes of blocks [first, ...] and marks them present for readers; the map file claims them after
    /// the next <see cref="Flush"/>.
    /// </summary>
    public void Store(long firstBlock, ReadOnlySpan<byte> bytes)
    {
        long offset = firstBlock * BlockSize;
        RandomAccess.Write(_data, bytes, offset);
        long lastBlock = (offset + bytes.Length - 1) / BlockSize;
        lock (Lock)
        {
            _unflushed.Add((firstBlock, lastBlock));
            for (long block = firstBlock; block <= lastBlock; block++)
            {
                ref byte cell = ref _bits[block >> 3];
                byte mask = (byte)(1 << (int)(block & 7));
                if ((cell & mask) == 0)
                {
                    cell |= mask;
                    Interlocked.Increment(ref _presentBlocks);
                }
            }
        }
    }

    /// <summary>True when stored blocks wait for <see cref="Flush"/>.</summary>
    public bool HasUnflushed
    {
        get
        {
            lock (Lock) return _unflushed.Count > 0;
        }
    }

    /// <summary>
    /// Flushes the data file (fdatasync) and then writes to the map the blocks stored before the flush began that
    /// are still present. Safe to call from any thread at any time; a no-op when nothing was stored.
    /// </summary>
    public void Flush()
    {
        lock (_flushLock)
        {
            List<(long First, long Last)> taken;
            lock (Lock)
            {
                if (_disposed || _unflushed.Count == 0) return;
                taken = _unflushed;
                _unflushed = new List<(long First, long Last)>();
                _invalidatedDuringFlush = new List<(long First, long Last)>();
            }

            try
            {
                RandomAccess.FlushToDisk(_data);
            }
            catch
            {
                lock (Lock)
                {
                    // Not known to be on disk: claim nothing, try again at the next flush.
                    _unflushed.AddRange(taken);
                    _invalidatedDuringFlush = null;
                }

                throw;
            }

            lock (Lock)
            {
                List<(long First, long Last)> invalidated = _invalidatedDuringFlush!;
                _invalidatedDuringFlush = null;
                if (_disposed) return;
                foreach ((long first, long last) in taken)
                {
                    for (long block = first; block <= last; block++)
                    {
                        if (!IsPresent(block) || invalidated.Exists(r => r.First <= block && block <= r.Last)) continue;
                        _durable[block >> 3] |= (byte)(1 << (int)(block & 7));
                    }

                    WriteBits(first, last);
                }
            }
        }
    }

    /// <summary>Marks the blocks overlapping [offset, offset+length) missing again.</summary>
    public void Invalidate(long offset, long length)
    {
        long firstBlock = offset / BlockSize;
        long lastBlock = Math.Min((offset + Math.Max(length, 1) - 1) / BlockSize, BlocksOf(BlobSize, BlockSize) - 1);
        lock (Lock)
        {
            for (long block = firstBlock; block <= lastBlock; block++)
            {
                ref byte cell = ref _bits[block >> 3];
                byte mask = (byte)(1 << (int)(block & 7));
                if ((cell & mask) != 0)
                {
                    cell &= (byte)~mask;
                    Interlocked.Decrement(ref _presentBlocks);
                }

                _durable[block >> 3] &= (byte)~mask;
            }

            _invalidatedDuringFlush?.Add((firstBlock, lastBlock));

            WriteBits(firstBlock, lastBlock);
        }
    }

    /// <summary>Reads present bytes straight from the data file.</summary>
    public void ReadData(long offset, Span<byte> destination)
    {
        int done = 0;
        while (done < destination.Length)
        {
            int n = RandomAccess.Read(_data, destination[done..], offset + done);
            if (n == 0)
            {
                throw new StorageException(StorageErrorKind.IoError,
                    $"cache file {DataPath} of blob {BlobId} ends at {offset + done} although its map says the " +
                    $"range [{offset}, {offset + destination.Length}) is present");
            }

            done += n;
        }
    }

    private void WriteBits(long firstBlock, long lastBlock)
    {
        int firstByte = (int)(firstBlock >> 3);
        int lastByte = (int)(lastBlock >> 3);
        RandomAccess.Write(_map, _durable.AsSpan(firstByte, lastByte - firstByte + 1), HeaderSize + firstByte);
    }

    /// <summary>Flushes what was stored (see <see cref="Flush"/>) and closes the files.</summary>
    public void Dispose()
    {
        try
        {
            Flush();
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or UnauthorizedAccessException)
        {
            // The blocks stay unclaimed in the map: fetched again next time.
            Serilog.Log.Warning("Cannot flush cache file {DataPath}: {Reason}", DataPath, e.Message);
        }

        lock (_flushLock)
        {
            lock (Lock) _disposed = true;
            _data.Dispose();
            _map.Dispose();
        }
    }

    /// <summary>One backend fetch in progress; readers of an overlapping range wait for it instead of fetching.</summary>
    internal sealed class Fetch
    {
        private readonly ManualResetEventSlim _done = new(false);

        public Fetch(long firstBlock, long lastBlock, bool readAhead)
        {
            FirstBlock = firstBlock;
            LastBlock = lastBlock;
            ReadAhead = readAhead;
        }

        /// <summary>Started by read-ahead, not by a reader.</summary>
        public bool ReadAhead { get; }

        public long FirstBlock { get; }

        public long LastBlock { get; }

        public StorageException? Failure { get; private set; }

        /// <summary>A read-ahead that failed because its cache was being disposed (set before <see cref="Finish"/>).</summary>
        public bool Cancelled { get; set; }

        public void Finish(StorageException? failure)
        {
            Failure = failure;
            _done.Set();
        }

        public void Wait() => _done.Wait();
    }
}
