using System.Collections.Concurrent;
using System.Numerics;
using System.Runtime.CompilerServices;
using Nydus.Actors.Interop;

namespace Nydus.Actors.Vfs;

/// <summary>Which per-file counters an instance keeps (upstream's ConfigV2 <c>rafs.iostats_files</c>,
/// <c>rafs.access_pattern</c>, <c>rafs.latest_read_files</c>; legacy <c>iostats_files</c>, <c>access_pattern</c>,
/// <c>latest_read_files</c>). All off by default, as upstream: they cost memory per file touched.</summary>
public readonly record struct FileAccounting(bool Files, bool AccessPattern, bool LatestReadFiles)
{
    public bool Any => Files || AccessPattern || LatestReadFiles;
}

/// <summary>
/// Upstream's per-file metrics of one mounted instance (utils/src/metrics.rs: <c>file_counters</c>,
/// <c>access_patterns</c>, <c>recent_read_files</c>), served by <c>GET /api/v1/metrics/files</c> and
/// <c>/pattern</c>. Only exists while at least one switch is on: an instance without them pays one null check per
/// request. With them, a request costs one lock-free dictionary read per table and interlocked adds; the entry of a
/// file is allocated the first time the file is touched (upstream creates it at lookup/readdir, which comes first).
/// </summary>
public sealed class FsFileStats
{
    private static readonly Func<ulong, InodeIoStats> NewCounters = static _ => new InodeIoStats();
    private static readonly Func<ulong, AccessPattern> NewPattern = static ino => new AccessPattern(ino);
    private static readonly Func<ulong, StrongBox<long>> NewWord = static _ => new StrongBox<long>();

    private readonly ConcurrentDictionary<ulong, InodeIoStats>? _files;
    private readonly ConcurrentDictionary<ulong, AccessPattern>? _patterns;
    // Upstream's InodeBitmap: one 64-bit word per 64 inodes, keyed by ino >> 6.
    private readonly ConcurrentDictionary<ulong, StrongBox<long>>? _latestRead;

    /// <summary>Keeps the tables of <paramref name="previous"/> that stay switched on (a remount continues them).</summary>
    public FsFileStats(FileAccounting accounting, FsFileStats? previous = null)
    {
        Accounting = accounting;
        if (accounting.Files) _files = previous?._files ?? new();
        if (accounting.AccessPattern) _patterns = previous?._patterns ?? new();
        if (accounting.LatestReadFiles) _latestRead = previous?._latestRead ?? new();
    }

    public FileAccounting Accounting { get; }

    /// <summary>Counts one operation on <paramref name="ino"/> (<paramref name="bytes"/>: what a READ returned).</summary>
    public void Count(ulong ino, int fop, Errno result, int bytes)
    {
        if (_files is { } files)
        {
            if (!files.TryGetValue(ino, out var counters)) counters = files.GetOrAdd(ino, NewCounters);
            counters.Count(fop, result, bytes);
        }
        if (fop != FsIoStats.Read) return;
        if (_patterns is { } patterns)
        {
            if (!patterns.TryGetValue(ino, out var pattern)) pattern = patterns.GetOrAdd(ino, NewPattern);
            pattern.CountRead();
        }
        if (_latestRead is { } latest && result == Errno.Success)
        {
            if (!latest.TryGetValue(ino >> 6, out var word)) word = latest.GetOrAdd(ino >> 6, NewWord);
            long bit = 1L << (int)(ino & 63);
            if ((Volatile.Read(ref word.Value) & bit) == 0) Interlocked.Or(ref word.Value, bit);
        }
    }

    /// <summary><c>/metrics/files</c>: <c>{"&lt;ino&gt;": {total_fops, data_read, block_count_read, fop_hits, fop_errors}}</c>,
    /// empty when the switch is off (upstream serializes its empty map).</summary>
    public SortedDictionary<ulong, Dictionary<string, object>> FilesBody()
    {
        var body = new SortedDictionary<ulong, Dictionary<string, object>>();
        if (_files is null) return body;
        foreach (var (ino, counters) in _files) body[ino] = counters.ToBody();
        return body;
    }

    /// <summary><c>/metrics/pattern</c>: the files read at least once, by inode.</summary>
    public List<Dictionary<string, object>> PatternBody()
    {
        var body = new List<Dictionary<string, object>>();
        if (_patterns is null) return body;
        foreach (var pattern in _patterns.Values.OrderBy(p => p.Ino))
            if (pattern.ToBody() is { } entry) body.Add(entry);
        return body;
    }

    /// <summary><c>/metrics/files?latest=true</c>: the inodes read since the previous call, as sorted ranges
    /// (<c>[start, end]</c>, or <c>[ino]</c> for a single one), cleared as they are taken (upstream's
    /// <c>bitmap_to_array_and_clear</c>).</summary>
    public List<ulong[]> TakeLatestRead()
    {
        var ranges = new List<ulong[]>();
        if (_latestRead is null) return ranges;
        ulong start = 0, last = 0;
        bool open = false;
        foreach (var key in _latestRead.Keys.Order())
        {
            ulong bits = (ulong)Interlocked.Exchange(ref _latestRead[key].Value, 0);
            while (bits != 0)
            {
                ulong ino = (key << 6) + (ulong)BitOperations.TrailingZeroCount(bits);
                bits &= bits - 1;
                if (open && ino != last + 1)
                {
                    ranges.Add(Range(start, last));
                    start = ino;
                }
                else if (!open)
                {
                    start = ino;
                    open = true;
                }
                last = ino;
            }
        }
        if (open) ranges.Add(Range(start, last));
        return ranges;

        static ulong[] Range(ulong first, ulong end) => first == end ? [first] : [first, end];
    }

    /// <summary>Upstream's InodeIoStats: every operation counts in total_fops and fop_hits (as upstream's
    /// <c>stats_fop_inc</c>, success or not); failures also in fop_errors (which upstream never increments).</summary>
    private sealed class InodeIoStats
    {
        private readonly long[] _hits = new long[FsIoStats.FopCount];
        private readonly long[] _errors = new long[FsIoStats.FopCount];
        private readonly long[] _blockCountRead = new long[8];
        private long _totalFops;
        private long _dataRead;

        public void Count(int fop, Errno result, int bytes)
        {
            Interlocked.Increment(ref _totalFops);
            Interlocked.Increment(ref _hits[fop]);
            if (result != Errno.Success) Interlocked.Increment(ref _errors[fop]);
            else if (fop == FsIoStats.Read)
            {
                Interlocked.Add(ref _dataRead, bytes);
                Interlocked.Increment(ref _blockCountRead[FsIoStats.SizeBucket(bytes)]);
            }
        }

        public Dictionary<string, object> ToBody() => new()
        {
            ["total_fops"] = Volatile.Read(ref _totalFops),
            ["data_read"] = Volatile.Read(ref _dataRead),
            ["block_count_read"] = FsIoStats.Snapshot(_blockCountRead),
            ["fop_hits"] = FsIoStats.Snapshot(_hits),
            ["fop_errors"] = FsIoStats.Snapshot(_errors),
        };
    }

    /// <summary>Upstream's AccessPattern: reads of the file (any outcome) and the wall time of the first.</summary>
    private sealed class AccessPattern(ulong ino)
    {
        private long _reads;
        private long _firstAccessTicks; // DateTime ticks (UTC); 0 = never read

        public ulong Ino { get; } = ino;

        public void CountRead()
        {
            Interlocked.Increment(ref _reads);
            if (Volatile.Read(ref _firstAccessTicks) == 0)
                Interlocked.CompareExchange(ref _firstAccessTicks, DateTime.UtcNow.Ticks, 0);
        }

        public Dictionary<string, object>? ToBody()
        {
            long reads = Volatile.Read(ref _reads);
            long ticks = Volatile.Read(ref _firstAccessTicks);
            if (reads == 0 || ticks == 0) return null;
            long sinceEpoch = ticks - DateTime.UnixEpoch.Ticks;
            return new Dictionary<string, object>
            {
                ["ino"] = Ino,
                ["nr_read"] = reads,
                ["first_access_time_secs"] = sinceEpoch / TimeSpan.TicksPerSecond,
                ["first_access_time_nanos"] = sinceEpoch % TimeSpan.TicksPerSecond * 100,
            };
        }
    }
}
