using Akka.Actor;
using Akka.Event;

namespace Nydus.Actors.Storage.Cache;

/// <summary>Disk budget of every blob cache work dir and how often it is checked (HOCON <c>nydus.blob-cache</c>).</summary>
/// <param name="DiskLimitBytes">Bytes each cache may hold; 0 means unlimited (no eviction).</param>
/// <param name="CheckInterval">How often the caches are measured and trimmed.</param>
public sealed record BlobCacheLimits(long DiskLimitBytes, TimeSpan CheckInterval)
{
    public static readonly BlobCacheLimits Unlimited = new(0, TimeSpan.FromSeconds(60));
}

/// <summary>
/// Owns the limits and eviction of the local blob caches. Reads never pass through it: the data path reads cache
/// files directly, and this actor only measures the open caches every <see cref="BlobCacheLimits.CheckInterval"/>
/// and, over <see cref="BlobCacheLimits.DiskLimitBytes"/>, evicts whole blobs least recently read first, never one
/// that a mounted image uses (<see cref="BlobFileCache.Pin"/>) or that is being read.
/// </summary>
public sealed class BlobCacheActor : ReceiveActor, IWithTimers
{
    /// <summary>Check the caches now (also sent by the timer). Replies with <see cref="Trimmed"/>.</summary>
    public sealed record Trim
    {
        public static readonly Trim Instance = new();
    }

    /// <summary>Bytes freed by one check over all caches.</summary>
    public sealed record Trimmed(long FreedBytes);

    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly BlobCacheLimits _limits;
    private readonly Func<IEnumerable<BlobFileCache>> _caches;

    public ITimerScheduler Timers { get; set; } = null!;

    /// <param name="limits">The budget.</param>
    /// <param name="caches">Which caches to check; every cache open in the process by default.</param>
    public BlobCacheActor(BlobCacheLimits limits, Func<IEnumerable<BlobFileCache>>? caches = null)
    {
        _limits = limits;
        _caches = caches ?? (static () => BlobFileCache.OpenCaches);
        Receive<Trim>(_ => Sender.Tell(new Trimmed(TrimAll())));
    }

    public static Props Props(BlobCacheLimits limits, Func<IEnumerable<BlobFileCache>>? caches = null) =>
        Akka.Actor.Props.Create(() => new BlobCacheActor(limits, caches));

    protected override void PreStart()
    {
        if (_limits.DiskLimitBytes > 0 && _limits.CheckInterval > TimeSpan.Zero)
        {
            Timers.StartPeriodicTimer("trim", Trim.Instance, _limits.CheckInterval);
            _log.Info("Blob cache disk limit {0} bytes per work dir, checked every {1}", _limits.DiskLimitBytes, _limits.CheckInterval);
        }
    }

    private long TrimAll()
    {
        if (_limits.DiskLimitBytes <= 0)
            return 0;
        long freed = 0;
        foreach (BlobFileCache cache in _caches())
        {
            try
            {
                freed += cache.TrimToLimit(_limits.DiskLimitBytes);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or ObjectDisposedException)
            {
                // A cache closing under us or a file we cannot delete: try again at the next check.
                _log.Warning("Trimming blob cache {0} failed: {1}", cache.WorkDir, e.Message);
            }
        }

        return freed;
    }
}
