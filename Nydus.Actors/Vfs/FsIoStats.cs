using System.Diagnostics;
using Nydus.Actors.Interop;

namespace Nydus.Actors.Vfs;

/// <summary>
/// Upstream's global filesystem counters of one mounted instance (<c>GET /api/v1/metrics</c>): hits, errors and
/// cumulative latency per file operation, bytes read, and read size and latency histograms. Counted by the
/// <see cref="VirtualFileSystem"/> on the worker threads with plain interlocked adds: no lock, no allocation.
/// Kept per virtual mountpoint, so a remount continues the same counters as upstream's do.
/// </summary>
public sealed class FsIoStats
{
    // Upstream's fop order (utils/src/metrics.rs StatsFop).
    public const int Getattr = 0, Readlink = 1, Open = 2, Release = 3, Read = 4, Statfs = 5, Getxattr = 6, Listxattr = 7,
        Opendir = 8, Lookup = 9, Readdir = 10, Readdirplus = 11, Access = 12, Forget = 13, BatchForget = 14;
    public const int FopCount = 15;

    private static readonly long TicksPerMicrosecond = Stopwatch.Frequency / 1_000_000 is > 0 and var t ? t : 1;

    private readonly long[] _hits = new long[FopCount];
    private readonly long[] _errors = new long[FopCount];
    private readonly long[] _latencyMicros = new long[FopCount];
    private readonly long[] _blockCountRead = new long[8];
    private readonly long[] _readLatencyDist = new long[8];
    private long _dataRead;
    private long _opens;
    private volatile FsFileStats? _files;

    /// <summary>The per-file counters, when the instance's config switches any on (null otherwise).</summary>
    public FsFileStats? Files => _files;

    /// <summary>Switches the per-file counters to what the mounted instance's config asks for; a remount keeps the
    /// tables that stay on.</summary>
    public void Configure(FileAccounting accounting)
    {
        var current = _files;
        if (current?.Accounting == accounting || (current is null && !accounting.Any)) return;
        _files = accounting.Any ? new FsFileStats(accounting, current) : null;
    }

    /// <summary>Counts one operation on inode <paramref name="ino"/> of the instance that began at
    /// <paramref name="started"/> (a <see cref="Stopwatch"/> timestamp) and returns its result, so a call site can
    /// wrap the call.</summary>
    public Errno Count(int fop, long started, Errno result, ulong ino)
    {
        CountGlobal(fop, started, result);
        _files?.Count(ino, fop, result, 0);
        return result;
    }

    private void CountGlobal(int fop, long started, Errno result)
    {
        Interlocked.Increment(ref _hits[fop]);
        if (result != Errno.Success) Interlocked.Increment(ref _errors[fop]);
        Interlocked.Add(ref _latencyMicros[fop], (Stopwatch.GetTimestamp() - started) / TicksPerMicrosecond);
        if (fop == Open && result == Errno.Success) Interlocked.Increment(ref _opens);
    }

    /// <summary>Counts a read of <paramref name="bytes"/> bytes of inode <paramref name="ino"/> (size and latency
    /// histograms, bytes read).</summary>
    public Errno CountRead(long started, Errno result, int bytes, ulong ino)
    {
        long micros = (Stopwatch.GetTimestamp() - started) / TicksPerMicrosecond;
        CountGlobal(Read, started, result);
        _files?.Count(ino, Read, result, bytes);
        if (result != Errno.Success) return result;
        Interlocked.Add(ref _dataRead, bytes);
        Interlocked.Increment(ref _blockCountRead[SizeBucket(bytes)]);
        Interlocked.Increment(ref _readLatencyDist[LatencyBucket(micros)]);
        return result;
    }

    /// <summary>Sizes: &lt;1K, 1K, 4K, 16K, 64K, 128K, 512K, 1M+ (upstream's buckets).</summary>
    internal static int SizeBucket(int bytes) => bytes switch
    {
        < 1 << 10 => 0,
        < 4 << 10 => 1,
        < 16 << 10 => 2,
        < 64 << 10 => 3,
        < 128 << 10 => 4,
        < 512 << 10 => 5,
        < 1 << 20 => 6,
        _ => 7,
    };

    /// <summary>Latency: ≤200 µs, 1 ms, 20 ms, 50 ms, 500 ms, 1 s, 2 s, more (upstream's buckets).</summary>
    private static int LatencyBucket(long micros) => micros switch
    {
        <= 200 => 0,
        <= 1_000 => 1,
        <= 20_000 => 2,
        <= 50_000 => 3,
        <= 500_000 => 4,
        <= 1_000_000 => 5,
        <= 2_000_000 => 6,
        _ => 7,
    };

    /// <summary>The counters with upstream's field names, for the API.</summary>
    public Dictionary<string, object> ToBody(string id) => new()
    {
        ["files_account_enabled"] = _files?.Accounting.Files ?? false,
        ["access_pattern_enabled"] = _files?.Accounting.AccessPattern ?? false,
        ["record_latest_read_files_enabled"] = _files?.Accounting.LatestReadFiles ?? false,
        ["measure_latency"] = true,
        ["id"] = id,
        ["nr_opens"] = Volatile.Read(ref _opens),
        ["data_read"] = Volatile.Read(ref _dataRead),
        ["block_count_read"] = Snapshot(_blockCountRead),
        ["fop_hits"] = Snapshot(_hits),
        ["fop_errors"] = Snapshot(_errors),
        ["fop_cumulative_latency_total"] = Snapshot(_latencyMicros),
        ["read_latency_dist"] = Snapshot(_readLatencyDist),
    };

    public long DataRead => Volatile.Read(ref _dataRead);

    public long Hits(int fop) => Volatile.Read(ref _hits[fop]);

    internal static long[] Snapshot(long[] counters)
    {
        var copy = new long[counters.Length];
        for (int i = 0; i < copy.Length; i++) copy[i] = Volatile.Read(ref counters[i]);
        return copy;
    }
}
