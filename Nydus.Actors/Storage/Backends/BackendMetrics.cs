using System.Diagnostics;

namespace Nydus.Actors.Storage.Backends;

/// <summary>
/// Counters of one remote backend, read on demand by the metrics API. Plain <see cref="Interlocked"/> updates so
/// FUSE worker threads never contend on a lock. The latency buckets are upstream's (storage/src/backend/mod.rs
/// metrics, "read_latency_dist"): &lt;=1, &lt;=20, &lt;=50, &lt;=100, &lt;=500, &lt;=1000, &lt;=2000 and &gt;2000 ms.
/// </summary>
public sealed class BackendMetrics
{
    /// <summary>Upper bounds (inclusive, milliseconds) of every bucket but the last, which is open-ended.</summary>
    public static readonly IReadOnlyList<long> LatencyBucketBoundsMs = [1, 20, 50, 100, 500, 1000, 2000];

    private readonly long[] _latencyBuckets = new long[8];
    // Upstream's request size buckets (utils/src/metrics.rs request_size_index): <1K, 1K~, 4K~, 16K~, 64K~, 128K~,
    // 512K~, 1M~; per bucket the reads and their summed latency, which nydusctl divides into an average.
    private readonly long[] _sizeReads = new long[8];
    private readonly long[] _sizeLatencyMillis = new long[8];
    private long _readCount;
    private long _readBytes;
    private long _readErrors;
    private long _cumulativeLatencyMicros;

    public long ReadCount => Interlocked.Read(ref _readCount);

    public long ReadBytes => Interlocked.Read(ref _readBytes);

    public long ReadErrors => Interlocked.Read(ref _readErrors);

    /// <summary>Sum of the latencies of all reads, successful or not, in microseconds.</summary>
    public long CumulativeLatencyMicros => Interlocked.Read(ref _cumulativeLatencyMicros);

    /// <summary>Copies the eight latency bucket counts (see <see cref="LatencyBucketBoundsMs"/>).</summary>
    public long[] GetLatencyHistogram()
    {
        var copy = new long[_latencyBuckets.Length];
        for (int i = 0; i < copy.Length; i++)
        {
            copy[i] = Interlocked.Read(ref _latencyBuckets[i]);
        }

        return copy;
    }

    /// <summary>Reads per request size bucket (upstream's read_count_block_size_dist).</summary>
    public long[] GetSizeReadCounts() => Copy(_sizeReads);

    /// <summary>Summed latency in milliseconds per request size bucket (upstream's read_cumulative_latency_millis_dist).</summary>
    public long[] GetSizeLatencyMillis() => Copy(_sizeLatencyMillis);

    private static long[] Copy(long[] counters)
    {
        var copy = new long[counters.Length];
        for (int i = 0; i < copy.Length; i++) copy[i] = Interlocked.Read(ref counters[i]);
        return copy;
    }

    /// <summary>Upstream's request_size_index: &lt;1K, 1K~, 4K~, 16K~, 64K~, 128K~, 512K~, 1M~.</summary>
    internal static int SizeBucketOf(long bytes) => bytes switch
    {
        < 1024 => 0,
        < 4096 => 1,
        < 16 * 1024 => 2,
        < 64 * 1024 => 3,
        < 128 * 1024 => 4,
        < 512 * 1024 => 5,
        < 1024 * 1024 => 6,
        _ => 7,
    };

    /// <summary>Records one finished backend read started at <paramref name="startTimestamp"/> (a <see cref="Stopwatch"/> timestamp).</summary>
    public void RecordRead(long startTimestamp, long bytes, bool failed)
    {
        TimeSpan elapsed = Stopwatch.GetElapsedTime(startTimestamp);
        Interlocked.Increment(ref _readCount);
        if (failed)
        {
            Interlocked.Increment(ref _readErrors);
        }
        else
        {
            Interlocked.Add(ref _readBytes, bytes);
        }

        Interlocked.Add(ref _cumulativeLatencyMicros, (long)elapsed.TotalMicroseconds);
        Interlocked.Increment(ref _latencyBuckets[BucketOf((long)elapsed.TotalMilliseconds)]);
        int size = SizeBucketOf(bytes);
        Interlocked.Increment(ref _sizeReads[size]);
        Interlocked.Add(ref _sizeLatencyMillis[size], (long)elapsed.TotalMilliseconds);
    }

    private static int BucketOf(long milliseconds)
    {
        for (int i = 0; i < LatencyBucketBoundsMs.Count; i++)
        {
            if (milliseconds <= LatencyBucketBoundsMs[i])
            {
                return i;
            }
        }

        return LatencyBucketBoundsMs.Count;
    }
}
