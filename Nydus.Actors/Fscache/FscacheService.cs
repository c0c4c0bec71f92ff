using System.Buffers;
using System.Collections.Concurrent;
using Microsoft.Win32.SafeHandles;
using Nydus.Actors.Interop;
using Serilog;

namespace Nydus.Actors.Fscache;

/// <summary>
/// Serves cachefiles on-demand requests (upstream's <c>FsCacheHandler</c>, service/src/fs_cache.rs) on
/// <c>--fscache-threads</c> dedicated threads, each a blocking read loop on the device (never Akka's dispatcher):
/// <list type="bullet">
/// <item>OPEN: the volume key's domain and the cookie key's blob id are looked up in the blob cache manager;
/// answered <c>copen id,size</c>, or <c>copen id,-ENOENT</c> for an unknown cookie, <c>-EALREADY</c> for an object id
/// already open, <c>-EIO</c> when the entry's files cannot be opened. The anonymous fd is kept until CLOSE.</item>
/// <item>READ: the range is read from the object's source (bootstrap file, or data blob through the blob
/// cache/backend) and written into the anonymous fd at the same offset, then READ_COMPLETE. When the data cannot
/// be had the read is completed with nothing written: the kernel finds the hole and fails that one read (EIO),
/// and nothing else waits for it.</item>
/// <item>CLOSE: the object and its fd are dropped.</item>
/// </list>
/// Bounded work: a READ that needs the object's source (not already in its cache file) holds a worker while the
/// backend answers, which a backend that hangs makes as long as its timeout (the registry's <c>timeout</c> per
/// request). So at most <see cref="SourceReadsPerObject"/> workers read one object's source at a time; further READs
/// of that object wait in the object's queue without holding a worker, and are served in order by the workers that
/// finish, so the other workers go on serving the other objects. Prefetches run on at most as many threads as there
/// are workers (<c>--fscache-threads</c>), one object each; the others wait their turn.
/// A malformed message is logged and dropped (an OPEN whose header was readable is refused, its fd closed); the
/// service goes on. Only a failing device ends it (<see cref="Ended"/>).
/// </summary>
public sealed class FscacheService : IDisposable
{
    private static readonly ILogger Log = Serilog.Log.ForContext<FscacheService>();

    /// <summary>Largest piece read from a source and written to a cache file at once.</summary>
    private const int CopySize = 1 << 20;

    /// <summary>The unit the cache file is filled in.</summary>
    private const long BlockSize = 4096;

    private readonly ICachefilesDevice _device;
    private readonly IFscacheCatalog _catalog;
    private readonly int _threadCount;
    private readonly ConcurrentDictionary<uint, OpenObject> _objects = new();
    private readonly List<Thread> _threads = [];
    private int _ended;
    private readonly int _sourceReadsPerObject;
    private readonly ConcurrentQueue<(uint ObjectId, OpenObject Object)> _prefetches = new();
    private int _prefetchThreads;

    private sealed class OpenObject(FscacheObjectSource source, SafeFileHandle fd)
    {
        public FscacheObjectSource Source { get; } = source;

        public SafeFileHandle Fd { get; } = fd;

        /// <summary>Workers reading the source for this object now, and the READs waiting for one of them (both
        /// under the queue's lock).</summary>
        public int SourceReaders;

        public readonly Queue<(CachefilesMessage Message, CachefilesRead Read)> Waiting = new();
    }

    /// <param name="metrics">Counters to add to (the host's, which the API reads); a fresh set when null.</param>
    public FscacheService(ICachefilesDevice device, IFscacheCatalog catalog, int threads, FscacheMetrics? metrics = null)
    {
        Metrics = metrics ?? new FscacheMetrics();
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        _device = device;
        _catalog = catalog;
        _threadCount = threads;
        _sourceReadsPerObject = Math.Max(1, threads / 2);
    }

    /// <summary>How many workers may read one object's source at a time: half of them (at least one), so that an
    /// object whose backend hangs leaves the other half to the other objects.</summary>
    public int SourceReadsPerObject => _sourceReadsPerObject;

    public FscacheMetrics Metrics { get; }

    /// <summary>Objects open now.</summary>
    public int OpenObjects => _objects.Count;

    /// <summary>Called once, from a worker, when the device fails (the service cannot go on).</summary>
    public Action<string>? Ended { get; set; }

    public void Start()
    {
        lock (_threads)
        {
            if (_threads.Count > 0) return;
            for (int i = 0; i < _threadCount; i++)
            {
                var thread = new Thread(Work) { IsBackground = true, Name = $"fscache-{i}" };
                _threads.Add(thread);
                thread.Start();
            }
        }
    }

    /// <summary>Stops the workers (the device stays open: a takeover needs it) and waits for them.</summary>
    public void Stop()
    {
        _device.Wake();
        lock (_threads)
        {
            foreach (var thread in _threads) thread.Join();
            _threads.Clear();
        }
    }

    private void Work()
    {
        var buffer = new byte[CachefilesMessage.MaxSize];
        try
        {
            while (true)
            {
                int n = _device.Read(buffer);
                if (n == 0) return;
                Handle(buffer.AsSpan(0, n));
            }
        }
        catch (IOException e)
        {
            Log.Error("fscache: the cachefiles device failed: {Error}", e.Message);
            if (Interlocked.Exchange(ref _ended, 1) == 0) Ended?.Invoke($"the cachefiles device failed: {e.Message}");
        }
    }

    /// <summary>One message: never throws but for the device itself failing.</summary>
    internal void Handle(ReadOnlySpan<byte> bytes)
    {
        CachefilesMessage message;
        try
        {
            message = CachefilesMessage.Parse(bytes);
        }
        catch (CachefilesProtocolException e)
        {
            Metrics.CountMalformed();
            Log.Warning("fscache: dropped a malformed request: {Error}", e.Message);
            if (e.Fd >= 0) Libc.Close(e.Fd);
            if (e.Header is { Opcode: CachefilesOpcode.Open } header) _device.Write(CachefilesCommands.Copen(header.MessageId, -(int)Errno.EINVAL));
            return;
        }

        switch (message.Opcode)
        {
            case CachefilesOpcode.Open:
                OnOpen(message, message.Open!);
                break;
            case CachefilesOpcode.Read:
                OnRead(message, message.Read!);
                break;
            case CachefilesOpcode.Close:
                OnClose(message);
                break;
        }
    }

    private void OnOpen(CachefilesMessage message, CachefilesOpen open)
    {
        var fd = new SafeFileHandle(open.Fd, ownsHandle: true);
        long answer;
        FscacheObjectSource? source = null;
        try
        {
            source = _catalog.Resolve(open.DomainId, open.CookieKey);
            if (source is null)
            {
                Log.Warning("fscache: OPEN {Id}: no blob {Blob} in domain '{Domain}' of the blob cache manager", message.MessageId, open.CookieKey, open.DomainId);
                answer = -(int)Errno.ENOENT;
            }
            else if (!_objects.TryAdd(message.ObjectId, new OpenObject(source, fd)))
            {
                Log.Warning("fscache: OPEN {Id}: object {Object} is already open", message.MessageId, message.ObjectId);
                answer = -(int)Errno.EALREADY;
            }
            else
            {
                answer = source.Size;
                Metrics.CountOpen();
                Log.Debug("fscache: object {Object} = {Source}, {Size} bytes", message.ObjectId, source.Describe(), answer);
                if (source.PrefetchPiece > 0) StartPrefetch(message.ObjectId, _objects[message.ObjectId]);
            }
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            Log.Error("fscache: OPEN {Id} of {Blob} in domain '{Domain}' failed: {Error}", message.MessageId, open.CookieKey, open.DomainId, e.Message);
            answer = -(int)Errno.EIO;
        }

        if (answer < 0)
        {
            fd.Dispose();
            if (source is not null && !_objects.ContainsKey(message.ObjectId)) (source as IDisposable)?.Dispose();
        }

        _device.Write(CachefilesCommands.Copen(message.MessageId, answer));
    }

    private void OnRead(CachefilesMessage message, CachefilesRead read)
    {
        if (!_objects.TryGetValue(message.ObjectId, out var obj))
        {
            // No fd to complete it on. A well-formed request, not a malformed one: after a takeover it is a READ the
            // predecessor's object was to serve (the kernel re-opens the object and offers it again with the new
            // id); otherwise the kernel fails it when the object closes. Upstream logs and drops it too.
            Metrics.CountUnknownObjectRead();
            Log.Information("fscache: READ {Id} for object {Object}, which is not open here (a predecessor's object after a takeover?): dropped",
                message.MessageId, message.ObjectId);
            return;
        }

        if (IsCached(obj, read))
        {
            // Answered at once, even while other READs of the object wait for its source.
            Serve(obj, message, read);
            return;
        }

        lock (obj.Waiting)
        {
            if (obj.SourceReaders >= _sourceReadsPerObject)
            {
                obj.Waiting.Enqueue((message, read));
                Metrics.CountQueuedRead();
                return;
            }

            obj.SourceReaders++;
        }

        // This worker serves its READ, then the object's waiting ones, until none is left.
        while (true)
        {
            Serve(obj, message, read);
            lock (obj.Waiting)
            {
                if (!obj.Waiting.TryDequeue(out var next))
                {
                    obj.SourceReaders--;
                    return;
                }

                (message, read) = next;
            }
        }
    }

    /// <summary>Whether a READ's range (clipped to the object) is in the cache file already.</summary>
    private static bool IsCached(OpenObject obj, CachefilesRead read)
    {
        long size = obj.Source.Size;
        long offset = (long)Math.Min(read.Offset, (ulong)size);
        long end = offset + (long)Math.Min(read.Length, (ulong)(size - offset));
        return end > offset && IsPresent(obj.Fd, offset, end);
    }

    /// <summary>Fills a READ's range from the cache file or the source, and completes it (empty on failure).</summary>
    private void Serve(OpenObject obj, CachefilesMessage message, CachefilesRead read)
    {
        long size = obj.Source.Size;
        // Only what lies inside the object is filled; written so that no sum of two 64-bit fields can wrap.
        long offset = (long)Math.Min(read.Offset, (ulong)size);
        long end = offset + (long)Math.Min(read.Length, (ulong)(size - offset));
        if (read.Offset > (ulong)size || read.Length > (ulong)size - read.Offset)
            Log.Warning("fscache: READ {Id} of [{Offset}, +{Length}) goes past the end of {Source} ({Size} bytes): only what lies inside is filled",
                message.MessageId, read.Offset, read.Length, obj.Source.Describe(), size);
        if (end > offset && IsPresent(obj.Fd, offset, end))
        {
            // Prefetched (or written by an earlier READ): the cache file has it. (The real kernel does not even ask
            // for a range its cache file holds; the simulation does, so this is what answers it without the backend.)
            Metrics.CountRead(end - offset);
            Metrics.CountReadFromCacheFile();
            CompleteRead(obj, message);
            return;
        }

        // Whole 4 KiB blocks are filled (the object's last one up to its end), so that a block the cache file holds
        // is all there: the presence check above and the prefetch rely on it, since a file system tells holes by block.
        long fillStart = offset / BlockSize * BlockSize;
        long fillEnd = end == offset ? end : Math.Min(size, (end + BlockSize - 1) / BlockSize * BlockSize);
        byte[] buffer = ArrayPool<byte>.Shared.Rent((int)Math.Min(CopySize, Math.Max(1, fillEnd - fillStart)));
        try
        {
            for (long at = end == offset ? end : fillStart; at < fillEnd;)
            {
                int length = (int)Math.Min(buffer.Length, fillEnd - at);
                obj.Source.Read(at, buffer.AsSpan(0, length));
                WriteAll(obj.Fd, buffer.AsSpan(0, length), at);
                at += length;
            }

            Metrics.CountRead(end - offset);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // Complete anyway: the kernel sees the range still missing and fails this read alone.
            Metrics.CountFailedRead();
            Log.Error("fscache: READ {Id} of [{Offset}, +{Length}) of {Source} failed: {Error}",
                message.MessageId, read.Offset, read.Length, obj.Source.Describe(), e.Message);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }

        CompleteRead(obj, message);
    }

    private void CompleteRead(OpenObject obj, CachefilesMessage message)
    {
        try
        {
            _device.CompleteRead(obj.Fd, message.MessageId);
        }
        catch (IOException e) when (obj.Fd.IsClosed)
        {
            Log.Debug("fscache: READ {Id}: object closed meanwhile: {Error}", message.MessageId, e.Message);
        }
    }

    /// <summary>Whether the cache file holds [<paramref name="offset"/>, <paramref name="end"/>) with no hole
    /// (SEEK_HOLE, as cachefiles itself tells what is cached).</summary>
    private static bool IsPresent(SafeFileHandle fd, long offset, long end)
    {
        try
        {
            long hole = Libc.LSeek(fd, offset, Libc.SEEK_HOLE);
            return hole >= end;
        }
        catch (ObjectDisposedException)
        {
            return false;
        }
    }

    /// <summary>
    /// Upstream's fscache prefetch of a data blob (its entry's <c>cache.prefetch</c>): the whole object, piece by
    /// piece, from the source into the cache file, skipping what is there already. It stops at the object's CLOSE or at
    /// the first piece that cannot be had (logged: READs then fetch what is missing). Objects are prefetched one per
    /// thread on at most as many threads as there are workers; the others wait in order.
    /// </summary>
    private void StartPrefetch(uint objectId, OpenObject obj)
    {
        _prefetches.Enqueue((objectId, obj));
        while (true)
        {
            int running = Volatile.Read(ref _prefetchThreads);
            if (running >= _threadCount) return;
            if (Interlocked.CompareExchange(ref _prefetchThreads, running + 1, running) == running) break;
        }

        new Thread(PrefetchQueued) { IsBackground = true, Name = "fscache-prefetch" }.Start();
    }

    /// <summary>A prefetch thread: objects from the queue until it is empty.</summary>
    private void PrefetchQueued()
    {
        while (true)
        {
            while (_prefetches.TryDequeue(out var next)) Prefetch(next.ObjectId, next.Object);
            Interlocked.Decrement(ref _prefetchThreads);
            // An object queued between the last TryDequeue and the decrement saw this thread still counted: take it
            // unless another thread has started meanwhile.
            if (_prefetches.IsEmpty) return;
            int running = Volatile.Read(ref _prefetchThreads);
            if (running >= _threadCount || Interlocked.CompareExchange(ref _prefetchThreads, running + 1, running) != running) return;
        }
    }

    private void Prefetch(uint objectId, OpenObject obj)
    {
        int piece = obj.Source.PrefetchPiece;
        long size = obj.Source.Size;
        byte[] buffer = ArrayPool<byte>.Shared.Rent(piece);
        long done = 0;
        try
        {
            for (long at = 0; at < size; at += piece)
            {
                if (!_objects.TryGetValue(objectId, out var current) || !ReferenceEquals(current, obj)) return;
                int length = (int)Math.Min(piece, size - at);
                if (IsPresent(obj.Fd, at, at + length)) continue;
                obj.Source.Read(at, buffer.AsSpan(0, length));
                WriteAll(obj.Fd, buffer.AsSpan(0, length), at);
                Metrics.CountPrefetched(length);
                done += length;
            }
            Log.Information("fscache: prefetched {Bytes} bytes of {Source} into its cache file", done, obj.Source.Describe());
        }
        catch (ObjectDisposedException)
        {
            // Closed meanwhile.
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            Metrics.CountFailedPrefetch();
            Log.Warning("fscache: prefetch of {Source} stopped after {Bytes} bytes: {Error}", obj.Source.Describe(), done, e.Message);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private static void WriteAll(SafeFileHandle fd, ReadOnlySpan<byte> data, long offset)
    {
        while (data.Length > 0)
        {
            nint n = Libc.PWriteFrom(fd, data, offset);
            if (n < 0)
            {
                var errno = Libc.LastErrno;
                if (errno == Errno.EINTR) continue;
                throw new IOException($"writing the cache file at {offset} failed: {errno}");
            }

            data = data[(int)n..];
            offset += n;
        }
    }

    private void OnClose(CachefilesMessage message)
    {
        if (_objects.TryRemove(message.ObjectId, out var obj))
        {
            obj.Fd.Dispose();
            (obj.Source as IDisposable)?.Dispose();
            Metrics.CountClose();
        }
        else
        {
            Log.Warning("fscache: CLOSE {Id} for object {Object}, which is not open", message.MessageId, message.ObjectId);
        }
    }

    /// <summary>Stops the workers and closes every object's fd (the device is the caller's).</summary>
    public void Dispose()
    {
        Stop();
        foreach (var (_, obj) in _objects)
        {
            obj.Fd.Dispose();
            (obj.Source as IDisposable)?.Dispose();
        }

        _objects.Clear();
    }
}

/// <summary>Counters of an fscache service: GET /metrics (nydus_fscache_*) and GET /api/v1/metrics/fscache. Made
/// by the host and handed to the service and the API; a successor's counters start from zero.</summary>
public sealed class FscacheMetrics
{
    private long _opens, _closes, _reads, _readBytes, _failedReads, _malformed, _unknownObjectReads;
    private long _readsFromCacheFile, _prefetchedBytes, _failedPrefetches, _queuedReads;

    public long Opens => Interlocked.Read(ref _opens);
    public long Closes => Interlocked.Read(ref _closes);
    public long Reads => Interlocked.Read(ref _reads);
    public long ReadBytes => Interlocked.Read(ref _readBytes);
    public long FailedReads => Interlocked.Read(ref _failedReads);
    public long Malformed => Interlocked.Read(ref _malformed);

    /// <summary>READs whose range the cache file held already (prefetched): answered without the source.</summary>
    public long ReadsFromCacheFile => Interlocked.Read(ref _readsFromCacheFile);

    /// <summary>Bytes prefetched into cache files.</summary>
    public long PrefetchedBytes => Interlocked.Read(ref _prefetchedBytes);

    /// <summary>Prefetches stopped by a piece that could not be had.</summary>
    public long FailedPrefetches => Interlocked.Read(ref _failedPrefetches);

    /// <summary>READs that waited in their object's queue because as many workers as allowed were reading its source
    /// (see <see cref="FscacheService.SourceReadsPerObject"/>).</summary>
    public long QueuedReads => Interlocked.Read(ref _queuedReads);

    /// <summary>READs for an object id not open here (after a takeover: the predecessor's objects), dropped.</summary>
    public long UnknownObjectReads => Interlocked.Read(ref _unknownObjectReads);

    internal void CountOpen() => Interlocked.Increment(ref _opens);
    internal void CountClose() => Interlocked.Increment(ref _closes);
    internal void CountFailedRead() => Interlocked.Increment(ref _failedReads);
    internal void CountMalformed() => Interlocked.Increment(ref _malformed);
    internal void CountUnknownObjectRead() => Interlocked.Increment(ref _unknownObjectReads);
    internal void CountReadFromCacheFile() => Interlocked.Increment(ref _readsFromCacheFile);
    internal void CountPrefetched(long bytes) => Interlocked.Add(ref _prefetchedBytes, bytes);
    internal void CountFailedPrefetch() => Interlocked.Increment(ref _failedPrefetches);
    internal void CountQueuedRead() => Interlocked.Increment(ref _queuedReads);

    internal void CountRead(long bytes)
    {
        Interlocked.Increment(ref _reads);
        Interlocked.Add(ref _readBytes, bytes);
    }
}
