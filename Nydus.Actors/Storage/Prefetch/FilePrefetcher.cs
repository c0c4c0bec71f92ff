using System.Text;
using Nydus.Actors.Config;
using Nydus.Actors.Rafs;
using Nydus.Actors.Rafs.Metadata;
using Nydus.Actors.Storage.Cache;
using Serilog;

namespace Nydus.Actors.Storage.Prefetch;

/// <summary>
/// Upstream's file-level prefetch (rafs/src/fs.rs, docs/prefetch.md): the chunks of listed files (directories
/// recursively), from <c>--prefetch-files</c>, the API's <c>prefetch_files</c> or the image's own prefetch table, are
/// fetched into the blob cache in the background. Chunks are sorted per blob and merged into ranges of up to
/// <c>merging_size</c> (V2 <c>batch_size</c>) with gaps of at most <c>merging_size &gt;&gt; 7</c>, as upstream's
/// <c>BlobIoMergeState</c> does, so a list of many small files costs few requests; ranges are fetched on
/// <c>threads</c> workers, throttled to <c>bandwidth_limit</c>. Nothing is decompressed: the cache keeps stored
/// bytes and the reads that come later check them.
/// <para>
/// As <see cref="BlobPrefetcher"/>, it never fails the mount (missing paths and failed ranges are logged and
/// counted) and Dispose cancels it (unmount).
/// </para>
/// </summary>
public sealed class FilePrefetcher : IPrefetcher
{
    private static readonly TimeSpan DisposeGrace = TimeSpan.FromSeconds(1);
    private const int LoggedFailures = 10;
    private static readonly ILogger Log = Serilog.Log.ForContext<FilePrefetcher>();

    private readonly RafsImage _image;
    private readonly BlobFileCache _cache;
    private readonly IReadOnlyList<string> _paths;
    private readonly IReadOnlyList<ulong> _inodes;
    private readonly int _mergeSize;
    private readonly int _threads;

    public int Threads => _threads;
    private readonly long _bandwidthLimit;
    private readonly BandwidthThrottle? _throttle;
    private readonly CancellationTokenSource _cancellation = new();
    private readonly Task _completion;

    private Piece[] _pieces = [];
    private long _nextPiece = -1;
    private long _piecesTotal;
    private long _piecesDone;
    private long _piecesFailed;
    private long _chunksTotal;
    private long _bytesPrefetched;
    private long _bytesFetched;
    private long _startedAtTicks;
    private long _finishedAtTicks;
    private int _failuresLogged;
    private int _disposed;

    private FilePrefetcher(RafsImage image, BlobFileCache cache, IReadOnlyList<string> paths, IReadOnlyList<ulong> inodes,
        PrefetchConfigV2 config)
    {
        _image = image;
        _cache = cache;
        _paths = paths;
        _inodes = inodes;
        _mergeSize = config.BatchSize is > 0 and <= PrefetchConfigV2.MaxBatchSize ? (int)config.BatchSize : 1 << 20;
        _threads = (int)Math.Clamp(config.Threads, 1, PrefetchConfigV2.MaxThreads);
        _bandwidthLimit = config.BandwidthLimit;
        _throttle = _bandwidthLimit > 0 ? new BandwidthThrottle(_bandwidthLimit) : null;
        // Walking the tree and planning may touch every inode of a big image: off the caller's thread.
        _completion = Task.Factory.StartNew(Run, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
    }

    /// <summary>Prefetches absolute <paramref name="paths"/> of the image (directories recursively); missing ones are skipped.</summary>
    public static FilePrefetcher ForPaths(RafsImage image, BlobFileCache cache, IReadOnlyList<string> paths, PrefetchConfigV2 config) =>
        new(image, cache, paths, [], config);

    /// <summary>Prefetches the inodes of the image's own prefetch table (<see cref="RafsImage.PrefetchTable"/>).</summary>
    public static FilePrefetcher ForInodes(RafsImage image, BlobFileCache cache, IReadOnlyList<ulong> inodes, PrefetchConfigV2 config) =>
        new(image, cache, [], inodes, config);

    /// <summary>
    /// Whether <paramref name="path"/> names the image root ("/", "//", "/."), which upstream treats as "prefetch
    /// everything": a whole-blob prefetch then does it with far fewer requests.
    /// </summary>
    public static bool IsRoot(string path) => path.Split('/', StringSplitOptions.RemoveEmptyEntries).All(p => p == ".");

    public Task Completion => _completion;

    public PrefetchProgress Progress => new()
    {
        Kind = "files",
        ChunksTotal = Interlocked.Read(ref _chunksTotal),
        BytesPrefetched = Interlocked.Read(ref _bytesPrefetched),
        BytesFetched = Interlocked.Read(ref _bytesFetched),
        PiecesTotal = Interlocked.Read(ref _piecesTotal),
        PiecesDone = Interlocked.Read(ref _piecesDone),
        PiecesFailed = Interlocked.Read(ref _piecesFailed),
        StartedAt = ToTime(Interlocked.Read(ref _startedAtTicks)),
        FinishedAt = ToTime(Interlocked.Read(ref _finishedAtTicks)),
    };

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _cancellation.Cancel();
        if (!_completion.Wait(DisposeGrace))
        {
            Log.Information("File prefetch cancelled while a backend read is still in flight; it will be dropped when it ends");
        }
    }

    private void Run()
    {
        Interlocked.Exchange(ref _startedAtTicks, DateTimeOffset.UtcNow.UtcTicks);
        int files = 0;
        try
        {
            files = Plan();
            long total = _pieces.Length;
            long bytes = 0;
            foreach (Piece piece in _pieces) bytes += piece.Length;
            Log.Information("Prefetching {Files} files: {Chunks} chunks, {Bytes} bytes in {Requests} requests of up to {MergeSize} bytes, on {Threads} threads, bandwidth limit {BandwidthLimit} bytes/s",
                files, Interlocked.Read(ref _chunksTotal), bytes, total, _mergeSize, _threads, _bandwidthLimit);
            if (total > 0 && !_cancellation.IsCancellationRequested)
            {
                var threads = new Thread[(int)Math.Min(_threads, total)];
                for (int i = 0; i < threads.Length; i++)
                {
                    threads[i] = new Thread(Work) { IsBackground = true, Name = $"nydus-file-prefetch-{i}" };
                    threads[i].Start();
                }

                foreach (Thread thread in threads) thread.Join();
            }
        }
        catch (Exception e)
        {
            Log.Error(e, "File prefetch stopped by an unexpected error");
        }
        finally
        {
            Interlocked.Exchange(ref _finishedAtTicks, DateTimeOffset.UtcNow.UtcTicks);
            PrefetchProgress progress = Progress;
            Log.Information("Prefetch of files {Outcome}: {Bytes} bytes ({Fetched} fetched), {Done}/{Total} requests done, {Failed} failed, in {Seconds:F1} s",
                _cancellation.IsCancellationRequested ? "cancelled" : "finished",
                progress.BytesPrefetched, progress.BytesFetched, progress.PiecesDone, progress.PiecesTotal, progress.PiecesFailed,
                (progress.FinishedAt - progress.StartedAt)?.TotalSeconds ?? 0);
        }
    }

    /// <summary>Resolves the targets, gathers the chunks of every regular file under them and merges them into pieces.</summary>
    private int Plan()
    {
        var roots = new List<ulong>(_inodes);
        foreach (string path in _paths)
        {
            if (Resolve(path) is { } ino) roots.Add(ino);
            else Log.Warning("Prefetch list entry {Path} does not exist in the image; skipped", path);
        }

        var seen = new HashSet<ulong>();
        var ranges = new List<BlobRange>();
        var pending = new Stack<ulong>(roots.AsEnumerable().Reverse());
        int files = 0;
        while (pending.Count > 0 && !_cancellation.IsCancellationRequested)
        {
            ulong ino = pending.Pop();
            if (!seen.Add(ino)) continue;
            InodeAttr attr;
            try
            {
                attr = _image.GetAttr(ino);
            }
            catch (RafsException e)
            {
                Log.Warning("Prefetch entry inode {NodeId} is unusable: {Reason}", ino, e.Message);
                continue;
            }

            switch (attr.Type)
            {
                case InodeType.Directory:
                    var children = new ChildSink();
                    _image.ReadDir(ino, 0, ref children);
                    for (int i = children.Inodes.Count - 1; i >= 0; i--) pending.Push(children.Inodes[i]);
                    break;
                case InodeType.Regular:
                    files++;
                    _image.CollectChunkRanges(ino, ranges);
                    break;
            }
        }

        Interlocked.Exchange(ref _chunksTotal, ranges.Count);
        _pieces = Merge(ranges, _cache, _mergeSize);
        Interlocked.Exchange(ref _piecesTotal, _pieces.Length);
        return files;
    }

    private ulong? Resolve(string path)
    {
        ulong ino = _image.RootInode;
        foreach (string part in path.Split('/', StringSplitOptions.RemoveEmptyEntries))
        {
            if (!_image.TryLookup(ino, Encoding.UTF8.GetBytes(part), out ino)) return null;
        }

        return ino;
    }

    /// <summary>
    /// Sorts the cached blobs' ranges by offset and merges neighbours (overlapping dedup chunks included) while the
    /// gap is at most <paramref name="mergeSize"/> &gt;&gt; 7 and the merged range stays within <paramref name="mergeSize"/>.
    /// Ranges of blobs behind another backend (local devices) are left out: they are read in place anyway.
    /// </summary>
    internal static Piece[] Merge(List<BlobRange> ranges, BlobFileCache cache, int mergeSize)
    {
        long maxGap = mergeSize >> 7;
        var pieces = new List<Piece>();
        foreach (var blob in ranges.Where(r => ReferenceEquals(r.Blob.Backend, cache)).GroupBy(r => r.Blob.Id, StringComparer.Ordinal))
        {
            long start = -1, end = -1;
            foreach (BlobRange range in blob.OrderBy(r => r.Offset))
            {
                if (start >= 0 && range.Offset - end <= maxGap && Math.Max(end, range.End) - start <= mergeSize)
                {
                    end = Math.Max(end, range.End);
                    continue;
                }

                if (start >= 0) pieces.Add(new Piece(blob.Key, start, (int)(end - start)));
                (start, end) = (range.Offset, range.End);
            }

            if (start >= 0) pieces.Add(new Piece(blob.Key, start, (int)(end - start)));
        }

        return pieces.ToArray();
    }

    private void Work()
    {
        CancellationToken cancellation = _cancellation.Token;
        try
        {
            while (!cancellation.IsCancellationRequested)
            {
                long index = Interlocked.Increment(ref _nextPiece);
                if (index >= _pieces.Length) return;
                Piece piece = _pieces[index];
                if (_throttle is not null && !_throttle.Acquire(piece.Length, cancellation)) return;
                try
                {
                    Interlocked.Add(ref _bytesFetched, _cache.Fill(piece.BlobId, piece.Offset, piece.Length));
                    Interlocked.Add(ref _bytesPrefetched, piece.Length);
                    Interlocked.Increment(ref _piecesDone);
                }
                catch (Exception e) when (e is StorageException or IOException or ObjectDisposedException)
                {
                    if (cancellation.IsCancellationRequested) return;
                    Interlocked.Increment(ref _piecesFailed);
                    if (Interlocked.Increment(ref _failuresLogged) <= LoggedFailures)
                        Log.Warning("Prefetch of blob {BlobId} [{Offset}, +{Length}) failed: {Reason}", piece.BlobId, piece.Offset, piece.Length, e.Message);
                    else
                        Log.Debug("Prefetch of blob {BlobId} [{Offset}, +{Length}) failed: {Reason}", piece.BlobId, piece.Offset, piece.Length, e.Message);
                }
            }
        }
        catch (Exception e)
        {
            Log.Error(e, "File prefetch worker {Worker} stopped by an unexpected error", Thread.CurrentThread.Name);
        }
    }

    private static DateTimeOffset? ToTime(long utcTicks) => utcTicks == 0 ? null : new DateTimeOffset(utcTicks, TimeSpan.Zero);

    /// <summary>One merged backend request: [Offset, Offset+Length) of a blob.</summary>
    internal readonly record struct Piece(string BlobId, long Offset, int Length);

    /// <summary>Collects the children of a directory ("." and ".." left out).</summary>
    private struct ChildSink : IDirEntrySink
    {
        public ChildSink() { }

        public List<ulong> Inodes { get; } = new();

        public bool TryAdd(scoped ReadOnlySpan<byte> name, ulong ino, InodeType type, long nextOffset)
        {
            if (!name.SequenceEqual("."u8) && !name.SequenceEqual(".."u8)) Inodes.Add(ino);
            return true;
        }
    }
}
