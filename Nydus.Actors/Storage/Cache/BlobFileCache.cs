using System.Buffers;
using System.Collections.Concurrent;
using System.Diagnostics;
using Nydus.Actors.Storage.Backends;
using Serilog;

namespace Nydus.Actors.Storage.Cache;

/// <summary>
/// Upstream's <c>blobcache</c>/<c>filecache</c>: a persistent local cache in front of a (usually remote) backend,
/// itself an <see cref="IBlobBackend"/> so <see cref="BlobChunkReader"/> and RAFS use it unchanged.
/// <para>
/// Choice (differs from upstream, which stores decompressed chunks at their uncompressed offsets): the cache keeps
/// the blob's <em>stored</em> (compressed) bytes at their own offsets in a sparse file, with a persistent bitmap of
/// 4 KiB blocks (see <see cref="CachedBlobFile"/>). It therefore needs no chunk table, serves any range (blob meta,
/// ToC and chunks alike), and decompression plus digest checks stay in <see cref="BlobChunkReader"/>. The cost is
/// decompressing on every hit. Misses fetch the requested range widened to whole blocks.
/// </para>
/// <para>
/// Reads of cached data are a pread on the calling worker thread. Concurrent readers of a missing range share one
/// backend fetch. Data that fails validation above this layer is dropped with <see cref="Invalidate"/> (see
/// <see cref="CachedChunkReader"/>) and fetched again.
/// </para>
/// <para>
/// Read-ahead (<see cref="BlobCacheSettings.ReadAheadWindows"/>, only with amplification): once a miss shows a
/// blob being read in order (it starts near where the previous read of the blob ended), the cache fetches the next
/// missing range after it (amplification rules: at most <see cref="BlobCacheSettings.ReadAmplifyBytes"/>, stopping
/// at present blocks, at other fetches and at the blob end) in the background, and when a reader reaches the first
/// block of that range it starts the next one, like the kernel's page cache read-ahead. So a sequential cold walk
/// reads one range while the next one is on its way. Read-aheads are ordinary single-flight fetches (readers of their
/// blocks wait for them, nothing is fetched twice), at most <c>ReadAheadWindows</c> run per blob, each on a short-lived thread of its own, and they are
/// cancelled at <see cref="Dispose"/>.
/// </para>
/// <para>
/// Every cache object of a <see cref="BlobCacheRegistry"/> on the same work dir shares one table of blob files (<see cref="BlobWorkDir"/>):
/// images that share a blob (a base layer, say) share its cache file, its block map and its single-flight fetches,
/// and a pin taken by any mounted image keeps the blob from eviction through any of them. Each object fetches misses
/// from its own backend (blob ids are content digests, so any backend holding the blob serves the same bytes) and
/// keeps its own counters. Caches are opened with <see cref="BlobCacheRegistry.Open"/>, the daemon's registry.
/// </para>
/// </summary>
public sealed class BlobFileCache : IBlobBackend
{
    private static readonly ILogger Log = Serilog.Log.ForContext<BlobFileCache>();

    private readonly BlobCacheSettings _settings;
    private readonly IBlobBackend _backend;
    private readonly BlobCacheRegistry _registry;
    private readonly BlobWorkDir _dir;
    private readonly ConcurrentDictionary<string, CachedBlobFile> _files;
    private readonly object _filesLock;
    private readonly HashSet<string> _myPins = new(StringComparer.Ordinal);
    private bool _disposed;
    private int _closed;
    private readonly CancellationTokenSource _readAheadStop = new();
    private int _readAheadsRunning;

    /// <summary>How long <see cref="Dispose"/> waits for cancelled read-aheads to end.</summary>
    private static readonly TimeSpan ReadAheadStopGrace = TimeSpan.FromSeconds(5);

    public string WorkDir => _settings.WorkDir;

    /// <summary>The shared table of the work dir (caches on one dir are trimmed once, see <see cref="BlobCacheRegistry.TrimToLimit"/>).</summary>
    internal BlobWorkDir WorkDirState => _dir;

    /// <summary>Suffix of a blob's data file in the work dir (upstream's name, see <see cref="CachedBlobFile"/>).</summary>
    public const string DataFileSuffix = CachedBlobFile.DataSuffix;

    /// <summary>Marks blobs as used by a mounted image: <see cref="TrimToLimit(long)"/> never evicts them.</summary>
    /// <remarks>Pins are counted per work dir: the blob stays until every cache object that pinned it is disposed.</remarks>
    public void Pin(IEnumerable<string> blobIds)
    {
        lock (_myPins)
        {
            foreach (string id in blobIds)
            {
                if (_myPins.Add(id)) _dir.PinCounts.AddOrUpdate(id, 1, static (_, n) => n + 1);
            }
        }
    }

    /// <summary>Replaces this object's pins with <paramref name="blobIds"/> (the blob cache manager's blobs in use).</summary>
    public void SetPins(IEnumerable<string> blobIds)
    {
        lock (_myPins)
        {
            UnpinAll();
            Pin(blobIds);
        }
    }

    private void UnpinAll()
    {
        lock (_myPins)
        {
            foreach (string id in _myPins) _dir.PinCounts.AddOrUpdate(id, 0, static (_, n) => n - 1);
            _myPins.Clear();
        }
    }

    internal BlobFileCache(BlobCacheRegistry registry, BlobCacheSettings settings, IBlobBackend backend, BlobCacheMetrics? metrics)
    {
        if (settings.BlockSize <= 0 || (settings.BlockSize & (settings.BlockSize - 1)) != 0)
        {
            throw new ArgumentException($"cache block size {settings.BlockSize} is not a power of two", nameof(settings));
        }

        _settings = settings;
        _backend = backend;
        Metrics = metrics ?? new BlobCacheMetrics();
        Directory.CreateDirectory(settings.WorkDir);
        _registry = registry;
        _dir = registry.AcquireWorkDir(settings);
        _files = _dir.Files;
        _filesLock = _dir.Lock;
    }

    public BlobCacheMetrics Metrics { get; }

    /// <summary>The backend misses are fetched from.</summary>
    public IBlobBackend Backend => _backend;

    /// <summary>Bytes of blob data held in cache files (present blocks; the last block of a blob may be partial).</summary>
    public long DiskUsageBytes
    {
        get
        {
            long total = 0;
            foreach (KeyValuePair<string, CachedBlobFile> entry in _files)
            {
                total += entry.Value.PresentBytes;
            }

            return total;
        }
    }

    public long GetBlobSize(string blobId)
    {
        CachedBlobFile file = Acquire(blobId);
        try
        {
            return file.BlobSize;
        }
        finally
        {
            Release(file);
        }
    }

    public void Read(string blobId, long offset, Span<byte> destination)
    {
        if (destination.IsEmpty)
        {
            return;
        }

        CachedBlobFile file = Acquire(blobId);
        try
        {
            if (offset < 0 || offset + destination.Length > file.BlobSize)
            {
                throw new StorageException(StorageErrorKind.BlobTooShort,
                    $"blob {blobId} is {file.BlobSize} bytes, shorter than the requested range " +
                    $"[{offset}, {offset + destination.Length})");
            }

            long fetchedBytes = 0;
            bool fetched = EnsurePresent(file, offset, destination.Length, _settings.ReadAmplifyBytes, ref fetchedBytes,
                out long ownFetchEnd);
            if (_settings.ReadAheadWindows > 0 && _settings.ReadAmplifyBytes > 0)
            {
                MaybeReadAhead(file, offset / file.BlockSize, (offset + destination.Length - 1) / file.BlockSize,
                    ownFetchEnd);
            }

            try
            {
                file.ReadData(offset, destination);
            }
            catch (IOException e)
            {
                throw new StorageException(StorageErrorKind.IoError,
                    $"read of cache file {file.DataPath} of blob {blobId} at {offset} failed: {e.Message}", e);
            }

            if (!fetched)
            {
                Metrics.RecordHit(destination.Length);
            }
        }
        finally
        {
            Release(file);
        }
    }

    /// <summary>
    /// Makes [offset, offset+length) of a blob present without reading it out and without read amplification:
    /// what prefetchers use, so the bytes they fetch are exactly the bytes they were throttled for.
    /// Returns the bytes fetched from the backend by this call (0 when all was cached).
    /// </summary>
    public long Fill(string blobId, long offset, int length)
    {
        if (length <= 0)
        {
            return 0;
        }

        CachedBlobFile file = Acquire(blobId);
        try
        {
            if (offset < 0 || offset + length > file.BlobSize)
            {
                throw new StorageException(StorageErrorKind.BlobTooShort,
                    $"blob {blobId} is {file.BlobSize} bytes, shorter than the requested range [{offset}, {offset + length})");
            }

            long fetched = 0;
            EnsurePresent(file, offset, length, amplifyBytes: 0, ref fetched, out _);
            return fetched;
        }
        finally
        {
            Release(file);
        }
    }

    /// <summary>
    /// Forgets the cached bytes of [offset, offset+length) of a blob (widened to whole blocks) so the next read
    /// fetches them again. Used when data served from the cache failed its digest check.
    /// </summary>
    public void Invalidate(string blobId, long offset, long length)
    {
        CachedBlobFile file = Acquire(blobId);
        try
        {
            file.Invalidate(offset, length);
            Metrics.RecordInvalidation();
        }
        finally
        {
            Release(file);
        }
    }

    /// <summary><see cref="TrimToLimit(long)"/> with the configured <see cref="BlobCacheSettings.DiskLimitBytes"/>.</summary>
    public long TrimToLimit() => _settings.DiskLimitBytes > 0 ? TrimToLimit(_settings.DiskLimitBytes) : 0;

    /// <summary>
    /// Deletes whole blobs, least recently read first, until the cache holds at most <paramref name="limitBytes"/>.
    /// Blobs being read at the moment are skipped. Returns the bytes freed. Meant for <see cref="BlobCacheActor"/>.
    /// </summary>
    public long TrimToLimit(long limitBytes)
    {
        long freed = 0;
        lock (_filesLock)
        {
            freed += ForgetDeletedFiles();
            long usage = DiskUsageBytes;
            if (usage <= limitBytes)
            {
                return freed;
            }

            var candidates = new List<CachedBlobFile>(_files.Values);
            candidates.Sort(static (a, b) => a.LastAccess.CompareTo(b.LastAccess));
            foreach (CachedBlobFile file in candidates)
            {
                if (usage <= limitBytes)
                {
                    break;
                }

                if (_dir.PinCounts.TryGetValue(file.BlobId, out int pins) && pins > 0)
                {
                    continue;
                }

                // Claim the blob only if nobody is inside; readers arriving later see the claim and reopen.
                if (Interlocked.CompareExchange(ref file.Readers, int.MinValue, 0) != 0)
                {
                    continue;
                }

                _files.TryRemove(file.BlobId, out _);
                long size = file.PresentBytes;
                file.Dispose();
                File.Delete(file.MapPath);
                File.Delete(file.DataPath);
                usage -= size;
                freed += size;
                Metrics.RecordEviction();
                Log.Information("Evicted blob {BlobId} from the cache ({Bytes} bytes)", file.BlobId, size);
            }
        }

        return freed;
    }

    /// <summary>
    /// Drops blobs whose data file someone else deleted (nydus-snapshotter's cache GC removes blob files by name):
    /// the open handle would otherwise keep the space allocated and the usage would count it. Caller holds the lock.
    /// </summary>
    private long ForgetDeletedFiles()
    {
        long freed = 0;
        foreach (CachedBlobFile file in _files.Values)
        {
            if (File.Exists(file.DataPath) || Interlocked.CompareExchange(ref file.Readers, int.MinValue, 0) != 0) continue;
            _files.TryRemove(file.BlobId, out _);
            freed += file.PresentBytes;
            file.Dispose();
            File.Delete(file.MapPath);
            Log.Information("Blob {BlobId} was deleted from the cache work dir by someone else; forgotten", file.BlobId);
        }
        return freed;
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _closed, 1) != 0) return;
        _registry.Closed(this);
        StopReadAheads();
        UnpinAll();
        lock (_filesLock) _disposed = true;
        _registry.ReleaseWorkDir(_dir);
    }

    /// <summary>
    /// Makes [offset, offset+length) present, fetching it or waiting for a fetch; true if it was missing.
    /// <paramref name="fetchedBytes"/> grows by what this call itself fetched (not what it waited for).
    /// </summary>
    private bool EnsurePresent(CachedBlobFile file, long offset, int length, int amplifyBytes, ref long fetchedBytes,
        out long ownFetchEnd)
    {
        ownFetchEnd = -1;
        int blockSize = file.BlockSize;
        long first = offset / blockSize;
        long last = (offset + length - 1) / blockSize;
        bool missed = false;
        while (true)
        {
            CachedBlobFile.Fetch? running;
            CachedBlobFile.Fetch mine;
            lock (file.Lock)
            {
                long firstMissing = file.FirstMissing(first, last);
                if (firstMissing < 0)
                {
                    return missed;
                }

                if (!missed)
                {
                    missed = true;
                    Metrics.RecordMiss();
                }

                long lastMissing = file.LastMissing(first, last);
                running = file.FindFetch(firstMissing, lastMissing);
                if (running is null && amplifyBytes > 0)
                {
                    lastMissing = Amplify(file, firstMissing, lastMissing, amplifyBytes);
                }

                mine = running ?? file.StartFetch(firstMissing, lastMissing);
            }

            if (running is not null)
            {
                running.Wait();
                if (running.Failure is not null && running.Cancelled && !_readAheadStop.IsCancellationRequested)
                {
                    // A read-ahead of another cache object on this work dir, stopped because that one was disposed:
                    // nothing is wrong with the blob, so this reader fetches for itself.
                    continue;
                }

                if (running.Failure is { } failure)
                {
                    // A fresh exception: the fetcher's own is being thrown on its thread at the same time.
                    throw new StorageException(failure.Kind, failure.Message, failure);
                }

                continue;
            }

            StorageException? error = null;
            try
            {
                fetchedBytes += FetchBlocks(file, mine.FirstBlock, mine.LastBlock, CancellationToken.None);
                ownFetchEnd = mine.LastBlock;
            }
            catch (StorageException e)
            {
                error = e;
                throw;
            }
            catch (IOException e)
            {
                error = new StorageException(StorageErrorKind.IoError,
                    $"cannot write cache file {file.DataPath} of blob {file.BlobId}: {e.Message}", e);
                throw error;
            }
            finally
            {
                file.EndFetch(mine, error);
            }
        }
    }

    /// <summary>
    /// Extends a fetch of [firstMissing, lastMissing] over the missing blocks right after it, up to
    /// <paramref name="amplifyBytes"/> in all (upstream's amplify_io): it stops at the first present block, at a
    /// block another fetch is bringing, and at the blob end. Caller holds the file's lock.
    /// </summary>
    private static long Amplify(CachedBlobFile file, long firstMissing, long lastMissing, int amplifyBytes)
    {
        long maxLast = Math.Min(firstMissing + Math.Max(amplifyBytes / file.BlockSize, 1) - 1, file.BlockCount - 1);
        if (maxLast <= lastMissing)
        {
            return lastMissing;
        }

        long extended = file.MissingRunEnd(lastMissing + 1, maxLast);
        while (extended > lastMissing && file.FindFetch(lastMissing + 1, extended) is { } other)
        {
            extended = Math.Min(extended, other.FirstBlock - 1);
        }

        return Math.Max(extended, lastMissing);
    }

    /// <summary>
    /// After a read of blocks [first, last]: starts a read-ahead when this read missed and fetched up to
    /// <paramref name="ownFetchEnd"/> itself in order with the previous read of the blob, or when it reached the
    /// first block of the last read-ahead (its trigger). See the class remarks.
    /// </summary>
    private void MaybeReadAhead(CachedBlobFile file, long first, long last, long ownFetchEnd)
    {
        long amplifyBlocks = Math.Max(_settings.ReadAmplifyBytes / file.BlockSize, 1);
        CachedBlobFile.Fetch fetch;
        lock (file.Lock)
        {
            long previous = file.LastReadBlock;
            file.LastReadBlock = last;
            long from = -1;
            if (ownFetchEnd >= 0 && previous >= 0 && first >= previous - amplifyBlocks && first <= previous + amplifyBlocks)
            {
                from = ownFetchEnd + 1;
            }
            else if (file.ReadAheadTrigger >= 0 && last >= file.ReadAheadTrigger && first < file.ReadAheadNext)
            {
                from = file.ReadAheadNext;
            }

            if (from < 0 || file.ReadAheadsRunning >= _settings.ReadAheadWindows || _readAheadStop.IsCancellationRequested)
            {
                // A trigger that could not start its read-ahead (too many running) stays armed for the next read.
                return;
            }

            if (from >= file.BlockCount || file.IsPresent(from) || file.FindFetch(from, from) is not null)
            {
                // Read-ahead stops at cached data and at fetches already on their way.
                file.ReadAheadTrigger = -1;
                return;
            }

            long end = Amplify(file, from, from, checked((int)(amplifyBlocks * file.BlockSize)));
            fetch = file.StartFetch(from, end, readAhead: true);
            file.ReadAheadsRunning++;
            file.ReadAheadTrigger = from;
            file.ReadAheadNext = end + 1;
            // Held until the read-ahead ends, so eviction leaves the blob alone meanwhile.
            Interlocked.Increment(ref file.Readers);
            Interlocked.Increment(ref _readAheadsRunning);
        }

        // A thread of its own, not the thread pool: the backend blocks its caller on async HTTP work that needs pool
        // threads to finish, so blocked pool threads could starve it. At most ReadAheadWindows per blob, each short-lived.
        var thread = new Thread(static state =>
        {
            var (cache, blobFile, blobFetch) = ((BlobFileCache, CachedBlobFile, CachedBlobFile.Fetch))state!;
            cache.RunReadAhead(blobFile, blobFetch);
        })
        {
            IsBackground = true,
            Name = "nydus-readahead",
        };
        try
        {
            thread.UnsafeStart((this, file, fetch));
        }
        catch (Exception e) when (e is OutOfMemoryException or ThreadStartException)
        {
            // Nothing runs the fetch: end it now, or its waiting readers and the blob's pin would stay for good.
            Metrics.RecordReadAheadFailure();
            EndReadAhead(file, fetch, new StorageException(StorageErrorKind.IoError,
                $"read-ahead of blob {file.BlobId} could not start a thread: {e.Message}", e));
        }
    }

    private void RunReadAhead(CachedBlobFile file, CachedBlobFile.Fetch fetch)
    {
        StorageException? error = null;
        try
        {
            int bytes = FetchBlocks(file, fetch.FirstBlock, fetch.LastBlock, _readAheadStop.Token);
            Metrics.RecordReadAhead(bytes);
        }
        catch (Exception e)
        {
            error = e as StorageException ?? new StorageException(
                e is OperationCanceledException or ObjectDisposedException ? StorageErrorKind.BackendUnavailable : StorageErrorKind.IoError,
                $"read-ahead of blob {file.BlobId} blocks [{fetch.FirstBlock}, {fetch.LastBlock}] failed: {e.Message}", e);
            Metrics.RecordReadAheadFailure();
            fetch.Cancelled = _readAheadStop.IsCancellationRequested;
            Log.Debug("Read-ahead of blob {BlobId} blocks [{First}, {Last}] failed: {Reason}", file.BlobId,
                fetch.FirstBlock, fetch.LastBlock, e.Message);
        }
        finally
        {
            EndReadAhead(file, fetch, error);
        }
    }

    /// <summary>Ends a read-ahead's fetch (waking its readers), its count and its pin on the blob.</summary>
    private void EndReadAhead(CachedBlobFile file, CachedBlobFile.Fetch fetch, StorageException? error)
    {
        file.EndFetch(fetch, error);
        lock (file.Lock)
        {
            file.ReadAheadsRunning--;
            if (error is not null)
            {
                // Not again from this trigger: the next miss (which will report the failure) decides.
                file.ReadAheadTrigger = -1;
            }
        }

        Release(file);
        if (Interlocked.Decrement(ref _readAheadsRunning) == 0)
        {
            lock (_readAheadStop) Monitor.PulseAll(_readAheadStop);
        }
    }

    /// <summary>Cancels running read-aheads and waits (bounded) until they have ended; no new ones start.</summary>
    private void StopReadAheads()
    {
        _readAheadStop.Cancel();
        long deadline = Environment.TickCount64 + (long)ReadAheadStopGrace.TotalMilliseconds;
        lock (_readAheadStop)
        {
            while (Volatile.Read(ref _readAheadsRunning) > 0)
            {
                long left = deadline - Environment.TickCount64;
                if (left <= 0)
                {
                    Log.Warning("{Count} read-aheads did not stop within {Seconds} s; closing the cache under them",
                        Volatile.Read(ref _readAheadsRunning), ReadAheadStopGrace.TotalSeconds);
                    break;
                }

                Monitor.Wait(_readAheadStop, TimeSpan.FromMilliseconds(Math.Min(left, 100)));
            }
        }
    }

    private int FetchBlocks(CachedBlobFile file, long firstBlock, long lastBlock, CancellationToken cancellation)
    {
        long start = firstBlock * file.BlockSize;
        long end = Math.Min((lastBlock + 1) * file.BlockSize, file.BlobSize);
        int length = checked((int)(end - start));
        byte[] buffer = ArrayPool<byte>.Shared.Rent(length);
        try
        {
            _backend.Read(file.BlobId, start, buffer.AsSpan(0, length), cancellation);
            file.Store(firstBlock, buffer.AsSpan(0, length));
            Metrics.RecordFetch(length);
            return length;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private CachedBlobFile Acquire(string blobId)
    {
        while (true)
        {
            if (!_files.TryGetValue(blobId, out CachedBlobFile? file))
            {
                lock (_filesLock)
                {
                    ObjectDisposedException.ThrowIf(_disposed || _dir.Disposed, this);
                    if (!_files.TryGetValue(blobId, out file))
                    {
                        CheckBlobId(blobId);
                        file = CachedBlobFile.Open(_dir.WorkDir, blobId, _dir.BlockSize,
                            () => _backend.GetBlobSize(blobId));
                        _files[blobId] = file;
                    }
                }
            }

            if (Interlocked.Increment(ref file.Readers) > 0)
            {
                file.LastAccess = Stopwatch.GetTimestamp();
                return file;
            }

            // Evicted under our feet: eviction removes it from the table while holding the lock, so wait on it.
            Interlocked.Decrement(ref file.Readers);
            lock (_filesLock)
            {
            }
        }
    }

    private static void Release(CachedBlobFile file) => Interlocked.Decrement(ref file.Readers);

    /// <summary>Cache file names are made from blob ids, which come from untrusted images.</summary>
    private static void CheckBlobId(string blobId)
    {
        if (blobId.Length == 0 || blobId.Contains('/') || blobId.Contains('\0') || blobId is "." or "..")
        {
            throw new StorageException(StorageErrorKind.BlobNotFound, $"invalid blob id \"{blobId}\"");
        }
    }
}
