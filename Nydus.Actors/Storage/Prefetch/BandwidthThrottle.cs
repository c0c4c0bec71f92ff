using System.Diagnostics;

namespace Nydus.Actors.Storage.Prefetch;

/// <summary>
/// A token bucket in bytes shared by the prefetch workers. A request larger than the bucket is admitted by going
/// into debt, which later requests wait out, so any piece size works with any limit and the long-run rate stays
/// at the limit. The bucket starts empty: a limit of L bytes/s makes N bytes take at least about N/L seconds.
/// </summary>
public sealed class BandwidthThrottle
{
    private readonly double _bytesPerSecond;
    private readonly object _lock = new();
    private double _tokens;
    private long _lastRefill = Stopwatch.GetTimestamp();

    /// <param name="bytesPerSecond">The rate; must be positive (0 = unlimited is handled by not throttling at all).</param>
    public BandwidthThrottle(long bytesPerSecond)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(bytesPerSecond);
        _bytesPerSecond = bytesPerSecond;
    }

    /// <summary>
    /// Takes <paramref name="bytes"/> tokens, sleeping until the bucket is out of debt. Returns false when
    /// <paramref name="cancellation"/> fires during the wait.
    /// </summary>
    public bool Acquire(long bytes, CancellationToken cancellation)
    {
        TimeSpan wait;
        lock (_lock)
        {
            long now = Stopwatch.GetTimestamp();
            // Refill, but keep at most one second of burst so an idle period does not buy an unbounded burst.
            _tokens = Math.Min(_bytesPerSecond, _tokens + Stopwatch.GetElapsedTime(_lastRefill, now).TotalSeconds * _bytesPerSecond);
            _lastRefill = now;
            _tokens -= bytes;
            wait = _tokens >= 0 ? TimeSpan.Zero : TimeSpan.FromSeconds(-_tokens / _bytesPerSecond);
        }

        if (wait == TimeSpan.Zero)
        {
            return !cancellation.IsCancellationRequested;
        }

        // WaitOne returns true when the token is cancelled: stop at once rather than finish the sleep.
        return !cancellation.WaitHandle.WaitOne(wait);
    }
}
