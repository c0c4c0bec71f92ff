using System.Buffers;
using Nydus.Actors.Config;
using Nydus.Actors.Storage.Backends;
using Serilog;

namespace Nydus.Actors.Storage.Prefetch;

/// <summary>
/// Upstream's blob-level <c>prefetch_all</c>: fetches whole blobs into the blob cache in the background, so later
/// FUSE reads hit local files. Blobs are cut into <c>batch_size</c> pieces, each one read through the cache (one
/// merged backend request for the missing part of a piece; already cached blocks cost no backend request), on
/// <c>threads</c> dedicated worker threads, throttled to <c>bandwidth_limit</c> bytes/s.
/// <para>
/// The prefetcher never fails the mount: errors are logged and counted in <see cref="Progress"/>. Dispose cancels
/// it (unmount): workers stop between pieces and throttle sleeps end at once; a backend read already in flight
/// cannot be interrupted, so Dispose waits for the workers only briefly and the stray read ends on its own (its
/// error, if the cache is closed under it, is ignored).
/// </para>
/// </summary>
public sealed class BlobPrefetcher : IPrefetcher
{
    /// <summary>Upper bound on how long Dispose waits for workers still inside a backend read.</summary>
    private static readonly TimeSpan DisposeGrace = TimeSpan.FromSeconds(1);

    /// <summary>Failures logged at Warning before the rest go to Debug, so a dead registry cannot flood the log.</summary>
    private const int LoggedFailures = 10;

    private static readonly ILogger Log = Serilog.Log.ForContext<BlobPrefetcher>();

    private readonly IBlobBackend _cache;
    private readonly PrefetchBlob[] _blobs;
    private readonly int _pieceSize;
    private readonly int _threads;

    public int Threads => _threads;
    private readonly long _bandwidthLimit;
    private readonly BandwidthThrottle? _throttle;
    private readonly CancellationTokenSource _cancellation = new();
    private readonly Task _completion;

    // The plan: pieces are numbered blob after blob; _pieceStarts[i] is the first piece number of blob i.
    private long[] _pieceStarts = [];
    private long _nextPiece = -1;
    private long _piecesTotal;
    private long _piecesDone;
    private long _piecesFailed;
    private long _blobsFailed;
    private long _bytesPrefetched;
    private long _bytesFetched;
    private long _startedAtTicks;
    private long _finishedAtTicks;
    private int _failuresLogged;
    private int _disposed;

    /// <summary>
    /// Starts prefetching at once when <paramref name="config"/> has <c>enable</c> and <c>prefetch_all</c>;
    /// otherwise does nothing (<see cref="Completion"/> is already complete).
    /// </summary>
    /// <param name="cache">The blob cache, usually a <see cref="Cache.BlobFileCache"/>; reads through it fill it.</param>
    /// <param name="blobs">The image's blobs; duplicates are fetched once.</param>
    public BlobPrefetcher(IBlobBackend cache, IReadOnlyList<PrefetchBlob> blobs, PrefetchConfigV2 config)
    {
        _cache = cache;
        _blobs = Distinct(blobs);
        // A zero batch (absent table) or one beyond what a single buffer can hold falls back to upstream's 1 MiB.
        _pieceSize = config.BatchSize is > 0 and <= PrefetchConfigV2.MaxBatchSize ? (int)config.BatchSize : 1 << 20;
        _threads = (int)Math.Clamp(config.Threads, 1, PrefetchConfigV2.MaxThreads);
        _bandwidthLimit = config.BandwidthLimit;
        _throttle = _bandwidthLimit > 0 ? new BandwidthThrottle(_bandwidthLimit) : null;

        if (!config.Enable || !config.PrefetchAll || _blobs.Length == 0)
        {
            _completion = Task.CompletedTask;
            return;
        }

        // Planning may need a size request per blob: off the caller's thread, like the fetching itself.
        _completion = Task.Factory.StartNew(Run, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
    }

    /// <summary>Completes when every worker has stopped (done or cancelled); never faults.</summary>
    public Task Completion => _completion;

    public PrefetchProgress Progress => new()
    {
        BytesPrefetched = Interlocked.Read(ref _bytesPrefetched),
        BytesFetched = Interlocked.Read(ref _bytesFetched),
        PiecesTotal = Interlocked.Read(ref _piecesTotal),
        PiecesDone = Interlocked.Read(ref _piecesDone),
        PiecesFailed = Interlocked.Read(ref _piecesFailed),
        BlobsFailed = Interlocked.Read(ref _blobsFailed),
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
            Log.Information("Prefetch cancelled while a backend read is still in flight; it will be dropped when it ends");
        }

        // The token source is not disposed: a worker still inside a read checks its token afterwards.
    }

    private void Run()
    {
        Interlocked.Exchange(ref _startedAtTicks, DateTimeOffset.UtcNow.UtcTicks);
        try
        {
            Plan();
            long total = Interlocked.Read(ref _piecesTotal);
            Log.Information("Prefetching {BlobCount} blobs ({PieceCount} pieces of {PieceSize} bytes) on {Threads} threads, bandwidth limit {BandwidthLimit} bytes/s",
                _blobs.Length, total, _pieceSize, _threads, _bandwidthLimit);
            if (total > 0 && !_cancellation.IsCancellationRequested)
            {
                int workers = (int)Math.Min(_threads, total);
                var threads = new Thread[workers];
                for (int i = 0; i < workers; i++)
                {
                    threads[i] = new Thread(Work) { IsBackground = true, Name = $"nydus-prefetch-{i}" };
                    threads[i].Start();
                }

                foreach (Thread thread in threads)
                {
                    thread.Join();
                }
            }
        }
        catch (Exception e)
        {
            // Nothing may escape into the mount; a bug here only costs the prefetch.
            Log.Error(e, "Prefetch stopped by an unexpected error");
        }
        finally
        {
            Interlocked.Exchange(ref _finishedAtTicks, DateTimeOffset.UtcNow.UtcTicks);
            PrefetchProgress progress = Progress;
            Log.Information("Prefetch of blobs {Outcome}: {Bytes} bytes ({Fetched} fetched), {Done}/{Total} pieces done, {Failed} failed, {BlobsFailed} blobs unavailable, in {Seconds:F1} s",
                _cancellation.IsCancellationRequested ? "cancelled" : "finished",
                progress.BytesPrefetched, progress.BytesFetched, progress.PiecesDone, progress.PiecesTotal, progress.PiecesFailed, progress.BlobsFailed,
                (progress.FinishedAt - progress.StartedAt)?.TotalSeconds ?? 0);
        }
    }

    /// <summary>Learns each blob's size and numbers the pieces; a blob whose size cannot be had is left out.</summary>
    private void Plan()
    {
        var starts = new long[_blobs.Length + 1];
        long pieces = 0;
        for (int i = 0; i < _blobs.Length; i++)
        {
            starts[i] = pieces;
            if (_cancellation.IsCancellationRequested)
            {
                continue;
            }

            long size = _blobs[i].Size;
            if (size < 0)
            {
                try
                {
                    size = _cache.GetBlobSize(_blobs[i].BlobId);
                }
                catch (Exception e) when (e is StorageException or IOException or ObjectDisposedException)
                {
                    Interlocked.Increment(ref _blobsFailed);
                    LogFailure(e, _blobs[i].BlobId, 0, 0);
                    size = 0;
                }
            }

            _blobs[i] = _blobs[i] with { Size = size };
            pieces += (size + _pieceSize - 1) / _pieceSize;
        }

        starts[_blobs.Length] = pieces;
        _pieceStarts = starts;
        Interlocked.Exchange(ref _piecesTotal, pieces);
    }

    private void Work()
    {
        CancellationToken cancellation = _cancellation.Token;
        long total = Interlocked.Read(ref _piecesTotal);
        byte[] buffer = ArrayPool<byte>.Shared.Rent(_pieceSize);
        try
        {
            int blob = 0;
            while (!cancellation.IsCancellationRequested)
            {
                long piece = Interlocked.Increment(ref _nextPiece);
                if (piece >= total)
                {
                    return;
                }

                // Pieces are taken in increasing order, so each worker's blob index only moves forward.
                while (_pieceStarts[blob + 1] <= piece)
                {
                    blob++;
                }

                string blobId = _blobs[blob].BlobId;
                long offset = (piece - _pieceStarts[blob]) * _pieceSize;
                int length = (int)Math.Min(_pieceSize, _blobs[blob].Size - offset);
                if (_throttle is not null && !_throttle.Acquire(length, cancellation))
                {
                    return;
                }

                try
                {
                    if (_cache is Cache.BlobFileCache fileCache)
                    {
                        // No copy out and no read amplification: a piece fetches just what the throttle admitted.
                        Interlocked.Add(ref _bytesFetched, fileCache.Fill(blobId, offset, length));
                    }
                    else
                    {
                        _cache.Read(blobId, offset, buffer.AsSpan(0, length));
                    }

                    Interlocked.Add(ref _bytesPrefetched, length);
                    Interlocked.Increment(ref _piecesDone);
                }
                catch (Exception e) when (e is StorageException or IOException or ObjectDisposedException)
                {
                    if (cancellation.IsCancellationRequested)
                    {
                        // The mount is going away and may have closed the cache under this read: not a failure.
                        return;
                    }

                    Interlocked.Increment(ref _piecesFailed);
                    LogFailure(e, blobId, offset, length);
                }
            }
        }
        catch (Exception e)
        {
            Log.Error(e, "Prefetch worker {Worker} stopped by an unexpected error", Thread.CurrentThread.Name);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private void LogFailure(Exception e, string blobId, long offset, int length)
    {
        if (Interlocked.Increment(ref _failuresLogged) <= LoggedFailures)
        {
            Log.Warning("Prefetch of blob {BlobId} [{Offset}, +{Length}) failed: {Reason}", blobId, offset, length, e.Message);
        }
        else
        {
            Log.Debug("Prefetch of blob {BlobId} [{Offset}, +{Length}) failed: {Reason}", blobId, offset, length, e.Message);
        }
    }

    private static PrefetchBlob[] Distinct(IReadOnlyList<PrefetchBlob> blobs)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var unique = new List<PrefetchBlob>(blobs.Count);
        foreach (PrefetchBlob blob in blobs)
        {
            if (seen.Add(blob.BlobId))
            {
                unique.Add(blob);
            }
        }

        return unique.ToArray();
    }

    private static DateTimeOffset? ToTime(long utcTicks) => utcTicks == 0 ? null : new DateTimeOffset(utcTicks, TimeSpan.Zero);
}
