using System.Collections.Concurrent;
using Nydus.Actors.Storage.Backends;
using Serilog;

namespace Nydus.Actors.Storage.Cache;

/// <summary>
/// The local blob caches of one daemon: every <see cref="BlobFileCache"/> is opened here, and the caches opened on the
/// same work dir share one table of blob files (<see cref="BlobWorkDir"/>: files, block maps, single-flight fetches,
/// pins). The host builds one per daemon and hands it down to whatever opens a cache (FUSE instances, block exports,
/// the fscache catalog); the blob-cache actor measures and trims it by the disk limit and disposes it when it stops.
/// </summary>
/// <remarks>
/// One per daemon, not one per process: nothing is shared through statics, so two daemons (or two tests) in one
/// process each see only their own caches. Two registries on the same directory would each keep their own block maps
/// of the same files, which is why everything in a daemon that opens a cache must be given this one.
/// </remarks>
public sealed class BlobCacheRegistry : IDisposable
{
    private readonly ConcurrentDictionary<BlobFileCache, byte> _open = new();
    private readonly Dictionary<string, BlobWorkDir> _workDirs = new(StringComparer.Ordinal);
    private bool _disposed;

    /// <summary>Read-ahead windows per blob of the caches FUSE mounts and block exports open (HOCON
    /// <c>nydus.blob-cache.read-ahead</c>, read by the host; see <see cref="BlobCacheSettings.ReadAheadWindows"/>).</summary>
    public int ReadAheadWindows { get; init; } = DefaultReadAheadWindows;

    /// <summary>What <see cref="ReadAheadWindows"/> is when the host says nothing.</summary>
    public const int DefaultReadAheadWindows = 2;

    /// <summary>The caches open now (the blob-cache actor's checks, tests).</summary>
    public IReadOnlyCollection<BlobFileCache> OpenCaches => [.. _open.Keys];

    /// <summary>Opens a cache on <see cref="BlobCacheSettings.WorkDir"/> that fetches misses from <paramref name="backend"/>.
    /// The caller owns it (disposes it when its image closes); whatever is still open when the registry is disposed is
    /// disposed then.</summary>
    public BlobFileCache Open(BlobCacheSettings settings, IBlobBackend backend, BlobCacheMetrics? metrics = null)
    {
        var cache = new BlobFileCache(this, settings, backend, metrics);
        lock (_workDirs)
        {
            if (_disposed)
            {
                cache.Dispose();
                throw new ObjectDisposedException(nameof(BlobCacheRegistry), "the daemon's blob caches are closed (the daemon is stopping)");
            }

            _open[cache] = 0;
        }

        return cache;
    }

    /// <summary>
    /// Trims every work dir to <paramref name="limitBytes"/> (<see cref="BlobFileCache.TrimToLimit(long)"/>, once per
    /// dir: the caches on one dir share its files). Returns the bytes freed. A cache closing meanwhile or a file that
    /// cannot be deleted is logged and tried again at the next call.
    /// </summary>
    public long TrimToLimit(long limitBytes)
    {
        long freed = 0;
        foreach (var cache in _open.Keys.DistinctBy(c => c.WorkDirState))
        {
            try
            {
                freed += cache.TrimToLimit(limitBytes);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or ObjectDisposedException)
            {
                Log.Warning("Trimming blob cache {WorkDir} failed: {Reason}", cache.WorkDir, e.Message);
            }
        }

        return freed;
    }

    /// <summary>Closes every cache still open (their read-aheads stop, block maps are flushed); later opens fail.</summary>
    public void Dispose()
    {
        lock (_workDirs)
        {
            if (_disposed) return;
            _disposed = true;
        }

        foreach (var cache in _open.Keys) cache.Dispose();
    }

    internal void Closed(BlobFileCache cache) => _open.TryRemove(cache, out _);

    /// <summary>The shared table of <paramref name="settings"/>' work dir, loaded from disk by its first user.</summary>
    internal BlobWorkDir AcquireWorkDir(BlobCacheSettings settings)
    {
        string key = Path.GetFullPath(settings.WorkDir);
        lock (_workDirs)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (!_workDirs.TryGetValue(key, out BlobWorkDir? state))
            {
                state = new BlobWorkDir(key, settings.BlockSize);
                _workDirs[key] = state;
            }
            else if (state.BlockSize != settings.BlockSize)
            {
                Log.Information("Cache work dir {WorkDir} is open with {BlockSize}-byte blocks already; sharing it as it is",
                    key, state.BlockSize);
            }

            state.Users++;
            return state;
        }
    }

    /// <summary>Drops a user of a work dir; the last one closes its files.</summary>
    internal void ReleaseWorkDir(BlobWorkDir state)
    {
        lock (_workDirs)
        {
            if (--state.Users > 0) return;
            _workDirs.Remove(state.WorkDir);
        }

        state.Close();
    }

    private static readonly ILogger Log = Serilog.Log.ForContext<BlobCacheRegistry>();
}

/// <summary>
/// The blob files of one cache work dir, shared by every <see cref="BlobFileCache"/> of a <see cref="BlobCacheRegistry"/>
/// open on it and closed when the last of them is disposed. Two tables on one directory would each keep their own block
/// map of the same file (the later flush losing the other's blocks) and could evict a blob the other has pinned.
/// </summary>
internal sealed class BlobWorkDir
{
    private static readonly ILogger Log = Serilog.Log.ForContext<BlobWorkDir>();

    /// <summary>How often stored blocks are flushed and claimed in the maps (see <see cref="CachedBlobFile.Flush"/>).</summary>
    private static readonly TimeSpan FlushInterval = TimeSpan.FromSeconds(1);

    private readonly Timer _flusher;

    /// <summary>Cache objects open on the dir; guarded by the registry's lock.</summary>
    internal int Users;

    public BlobWorkDir(string workDir, int blockSize)
    {
        WorkDir = workDir;
        BlockSize = blockSize;
        LoadExisting();
        _flusher = new Timer(static state => ((BlobWorkDir)state!).FlushAll(), this, FlushInterval, FlushInterval);
    }

    public string WorkDir { get; }

    /// <summary>The block size of the first cache opened on the dir; later ones share its files as they are.</summary>
    public int BlockSize { get; }

    public ConcurrentDictionary<string, CachedBlobFile> Files { get; } = new(StringComparer.Ordinal);
    public object Lock { get; } = new();

    /// <summary>How many cache objects pinned each blob.</summary>
    public ConcurrentDictionary<string, int> PinCounts { get; } = new(StringComparer.Ordinal);

    public volatile bool Disposed;

    private void FlushAll()
    {
        foreach (KeyValuePair<string, CachedBlobFile> entry in Files)
        {
            if (!entry.Value.HasUnflushed) continue;
            try
            {
                entry.Value.Flush();
            }
            catch (Exception e) when (e is IOException or ObjectDisposedException or UnauthorizedAccessException)
            {
                Log.Warning("Cannot flush cache file {DataPath}: {Reason}", entry.Value.DataPath, e.Message);
            }
        }
    }

    /// <summary>Stops the flusher (waiting for a flush in progress) and closes the files, which flush the rest.</summary>
    public void Close()
    {
        using (var stopped = new ManualResetEvent(false))
        {
            if (_flusher.Dispose(stopped)) stopped.WaitOne(TimeSpan.FromSeconds(30));
        }

        lock (Lock)
        {
            Disposed = true;
            foreach (KeyValuePair<string, CachedBlobFile> entry in Files) entry.Value.Dispose();
            Files.Clear();
        }
    }

    /// <summary>Picks up the blobs a previous run left in the work dir, so eviction and usage see them.</summary>
    private void LoadExisting()
    {
        var blobIds = new SortedSet<string>(StringComparer.Ordinal);
        foreach (string suffix in new[] { CachedBlobFile.MapSuffix, CachedBlobFile.LegacyMapSuffix })
        {
            foreach (string mapPath in Directory.EnumerateFiles(WorkDir, "*" + suffix))
            {
                blobIds.Add(Path.GetFileName(mapPath)[..^suffix.Length]);
            }
        }

        foreach (string blobId in blobIds)
        {
            try
            {
                CachedBlobFile file = CachedBlobFile.Open(WorkDir, blobId, BlockSize, blobSize: null);
                file.LastAccess = 0;
                Files[blobId] = file;
            }
            catch (StorageException e)
            {
                Log.Warning("Ignoring unusable cache files of blob {BlobId}: {Reason}", blobId, e.Message);
            }
        }
    }
}
