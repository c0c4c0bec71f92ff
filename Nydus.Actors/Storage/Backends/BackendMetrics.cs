using System.Diagnostics;
using System.Numerics;

namespace Nydus.Actors.Storage.Backends;

/// <summary>
/// Counters of one remote backend, read on demand by the metrics API. Plain <see cref="Interlocked"/> updates so
/// FUSE worker threads never contend on a lock. The distributions are upstream's (utils/src/metrics.rs
/// <c>BackendMetrics</c>): eight request-size buckets (&lt;1K, 1K~, 4K~, 16K~, 64K~, 128K~, 512K~, 1M~) for
/// <c>read_count_block_size_dist</c> and <c>read_cumulative_latency_millis_dist</c> (latency summed per size), and
/// per size the eight latency buckets (&lt;=1, &lt;=20, &lt;=50, &lt;=100, &lt;=500, &lt;=1000, &lt;=2000, &gt;2000 ms) of
/// <c>read_latency_sizes_dist</c>.
/// </summary>
public sealed class BackendMetrics
{
    public const int Buckets = 8;

    /// <summary>Upper bounds (inclusive, milliseconds) of every latency bucket but the last, which is open-ended.</summary>
    public static readonly IReadOnlyList<long> LatencyBucketBoundsMs = [1, 20, 50, 100, 500, 1000, 2000];

    private readonly long[] _countBySize = new long[Buckets];
    private readonly long[] _latencyMillisBySize = new long[Buckets];
    private readonly long[] _latencyBySize = new long[Buckets * Buckets];
    private long _readCount;
    private long _readBytes;
    private long _readErrors;
    private long _cumulativeLatencyMicros;
    private long _cumulativeLatencyMillis;

    public long ReadCount => Interlocked.Read(ref _readCount);

    public long ReadBytes => Interlocked.Read(ref _readBytes);

    public long ReadErrors => Interlocked.Read(ref _readErrors);

    /// <summary>Sum of the latencies of all reads, successful or not, in microseconds.</summary>
    public long CumulativeLatencyMicros => Interlocked.Read(ref _cumulativeLatencyMicros);

    /// <summary>Upstream's <c>read_cumulative_latency_millis_total</c>: whole milliseconds summed per read.</summary>
    public long CumulativeLatencyMillis => Interlocked.Read(ref _cumulativeLatencyMillis);

    /// <summary><c>read_count_block_size_dist</c>: reads per request-size bucket.</summary>
    public long[] CountBySize() => Copy(_countBySize);

    /// <summary><c>read_cumulative_latency_millis_dist</c>: milliseconds spent per request-size bucket.</summary>
    public long[] LatencyMillisBySize() => Copy(_latencyMillisBySize);

    /// <summary><c>read_latency_sizes_dist</c>: per request-size bucket, reads per latency bucket.</summary>
    public long[][] LatencyBySize()
    {
        var rows = new long[Buckets][];
        for (int size = 0; size < Buckets; size++)
        {
            rows[size] = new long[Buckets];
            for (int latency = 0; latency < Buckets; latency++)
            {
                rows[size][latency] = Interlocked.Read(ref _latencyBySize[size * Buckets + latency]);
            }
        }

        return rows;
    }

    /// <summary>Records one finished backend read of <paramref name="bytes"/> (asked for) started at
    /// <paramref name="startTimestamp"/> (a <see cref="Stopwatch"/> timestamp).</summary>
    public void RecordRead(long startTimestamp, long bytes, bool failed)
    {
        TimeSpan elapsed = Stopwatch.GetElapsedTime(startTimestamp);
        long millis = (long)elapsed.TotalMilliseconds;
        int size = SizeBucket(bytes);
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
        Interlocked.Add(ref _cumulativeLatencyMillis, millis);
        Interlocked.Increment(ref _countBySize[size]);
        Interlocked.Add(ref _latencyMillisBySize[size], millis);
        Interlocked.Increment(ref _latencyBySize[size * Buckets + LatencyBucket(millis)]);
    }

    /// <summary>Upstream's <c>request_size_index</c>, the same table lookup on the leading zeros of size/1K.</summary>
    public static int SizeBucket(long bytes)
    {
        int ceil = BitOperations.LeadingZeroCount((ulong)bytes >> 10);
        int shift = (Math.Max(ceil, 53) - 53) << 2;
        return (int)((0x0112_2334_5567UL >> shift) & 0xf);
    }

    public static int LatencyBucket(long milliseconds)
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

    private static long[] Copy(long[] counters)
    {
        var copy = new long[counters.Length];
        for (int i = 0; i < copy.Length; i++)
        {
            copy[i] = Interlocked.Read(ref counters[i]);
        }

        return copy;
    }
}
