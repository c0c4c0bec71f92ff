using Nydus.Actors.Storage;
using Nydus.Actors.Storage.Backends;
using Nydus.Actors.Storage.Cache;
using Nydus.Actors.Tests.Support;
using Xunit;

namespace Nydus.Actors.Tests.Storage.Cache;

/// <summary>
/// Read-ahead in the blob cache: a blob read in order gets its next missing range fetched in the background, as
/// ordinary single-flight fetches (nothing fetched twice), stopped and waited for at dispose.
/// </summary>
public sealed class ReadAheadTests : IDisposable
{
    // Every test gets the caches of its own daemon, as the host makes one registry per daemon.
    private readonly BlobCacheRegistry _caches = new();

    public void Dispose() => _caches.Dispose();

    private const string BlobId = "readahead";
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(30);

    private static byte[] Content(int size)
    {
        var content = new byte[size];
        new Random(5).NextBytes(content);
        return content;
    }

    private static BlobCacheSettings Settings(TempDir dir, int windows = 2) =>
        new() { WorkDir = dir.Path, ReadAmplifyBytes = 64 << 10, ReadAheadWindows = windows };

    [Fact]
    public void Sequential_reads_are_read_ahead_and_every_byte_is_fetched_once()
    {
        using var dir = new TempDir("readahead-seq");
        byte[] content = Content((1 << 20) + 1234);
        var backend = new CountingBackend().Add(BlobId, content);
        var read = new byte[content.Length];
        BlobCacheMetrics metrics;
        using (var cache = _caches.Open(Settings(dir), backend))
        {
            metrics = cache.Metrics;
            // Small reads in blob order, like a walk over small files packed back to back.
            for (int offset = 0; offset < content.Length; offset += 3000)
            {
                int length = Math.Min(3000, content.Length - offset);
                cache.Read(BlobId, offset, read.AsSpan(offset, length));
            }
        }

        // After dispose no read-ahead runs any more, so the counters are final.
        Assert.True(content.AsSpan().SequenceEqual(read));
        List<(long Offset, int Length)> ranges = backend.Ranges.OrderBy(r => r.Offset).ToList();
        long next = 0;
        foreach ((long offset, int length) in ranges)
        {
            Assert.Equal(next, offset);
            Assert.True(length <= 64 << 10, $"a fetch of {length} bytes is larger than the amplify size");
            next = offset + length;
        }

        Assert.Equal(content.Length, next);
        Assert.Equal(content.Length, metrics.FetchedBytes);
        Assert.True(metrics.ReadAheads > 0, "nothing was read ahead");
        Assert.Equal(0, metrics.ReadAheadFailures);
        // Every backend read is a read-ahead or a miss's own fetch, and most came ahead of their readers.
        long ownFetches = backend.Reads - metrics.ReadAheads;
        Assert.InRange(ownFetches, 1, metrics.Misses);
        Assert.True(metrics.ReadAheads > ownFetches, $"{metrics.ReadAheads} read-aheads, {ownFetches} fetches by readers");
    }

    [Fact]
    public void Misses_far_apart_are_not_read_ahead()
    {
        using var dir = new TempDir("readahead-random");
        byte[] content = Content(4 << 20);
        var backend = new CountingBackend().Add(BlobId, content);
        using (var cache = _caches.Open(Settings(dir), backend))
        {
            cache.Read(BlobId, 0, new byte[100]);
            cache.Read(BlobId, 2 << 20, new byte[100]);
            cache.Read(BlobId, 1 << 20, new byte[100]);
            Assert.Equal(0, cache.Metrics.ReadAheads);
        }

        Assert.Equal([(0L, 64 << 10), (2L << 20, 64 << 10), (1L << 20, 64 << 10)], backend.Ranges);
    }

    [Fact]
    public void Read_ahead_stops_at_cached_data()
    {
        using var dir = new TempDir("readahead-cached");
        byte[] content = Content(1 << 20);
        var backend = new CountingBackend().Add(BlobId, content);
        using (var cache = _caches.Open(Settings(dir), backend))
        {
            // Cached already (a prefetcher's Fill never amplifies or reads ahead): 128 KiB to 192 KiB.
            cache.Fill(BlobId, 128 << 10, 64 << 10);
            cache.Read(BlobId, 0, new byte[100]);
            // In order with the previous read: fetches 64 KiB..128 KiB itself; the read-ahead would start at the
            // cached 128 KiB and so does not start at all.
            cache.Read(BlobId, 64 << 10, new byte[100]);
        }

        Assert.Equal([(128L << 10, 64 << 10), (0L, 64 << 10), (64L << 10, 64 << 10)], backend.Ranges);
    }

    [Fact]
    public async Task Dispose_cancels_a_read_ahead_stuck_in_the_backend_and_readers_of_its_blocks_fail()
    {
        using var dir = new TempDir("readahead-cancel");
        byte[] content = Content(1 << 20);
        // Everything from 128 KiB on hangs until cancelled (a registry that stopped answering).
        using var backend = new HangingBackend(content, hangFrom: 128 << 10);
        var cache = _caches.Open(Settings(dir, windows: 1), backend);
        try
        {
            cache.Read(BlobId, 0, new byte[100]);
            cache.Read(BlobId, 64 << 10, new byte[100]);
            // The read-ahead of 128 KiB..192 KiB is running and hangs.
            Assert.True(backend.Hanging.Wait(Bound), "no read-ahead reached the backend");

            // A reader of the hanging range waits for that fetch, and fails when dispose cancels it.
            Exception? readerError = null;
            var reader = new Thread(() =>
            {
                try
                {
                    cache.Read(BlobId, 130 << 10, new byte[100]);
                }
                catch (Exception e)
                {
                    readerError = e;
                }
            });
            reader.Start();
            Assert.True(SpinWait.SpinUntil(() => cache.Metrics.Misses == 3, Bound), "the reader never waited");

            Task dispose = Task.Run(cache.Dispose);
            await dispose.Within(Bound, "dispose did not return");
            Assert.True(reader.Join(Bound), "the reader of the cancelled range did not return");
            Assert.IsType<StorageException>(readerError);
            Assert.Equal(1, cache.Metrics.ReadAheadFailures);
            Assert.Equal(0, cache.Metrics.ReadAheads);
        }
        finally
        {
            cache.Dispose();
        }
    }

    [Fact]
    public async Task Reader_of_another_cache_on_the_work_dir_fetches_for_itself_when_a_disposed_cache_cancels_its_read_ahead()
    {
        using var dir = new TempDir("readahead-shared");
        byte[] content = Content(1 << 20);
        using var hanging = new HangingBackend(content, hangFrom: 128 << 10);
        var counting = new CountingBackend().Add(BlobId, content);
        var first = _caches.Open(Settings(dir, windows: 1), hanging);
        // A second image over the same work dir: it shares the blob's cache file and its running fetches.
        using var second = _caches.Open(Settings(dir), counting);
        try
        {
            first.Read(BlobId, 0, new byte[100]);
            first.Read(BlobId, 64 << 10, new byte[100]);
            Assert.True(hanging.Hanging.Wait(Bound), "no read-ahead reached the backend");

            var read = new byte[100];
            Exception? readerError = null;
            var reader = new Thread(() =>
            {
                try
                {
                    second.Read(BlobId, 130 << 10, read);
                }
                catch (Exception e)
                {
                    readerError = e;
                }
            });
            reader.Start();
            Assert.True(SpinWait.SpinUntil(() => second.Metrics.Misses == 1, Bound), "the reader never waited");

            Task dispose = Task.Run(first.Dispose);
            await dispose.Within(Bound, "dispose did not return");
            Assert.True(reader.Join(Bound), "the reader did not return");
            Assert.Null(readerError);
            Assert.True(content.AsSpan(130 << 10, 100).SequenceEqual(read));
            Assert.Contains((128L << 10, 64 << 10), counting.Ranges);
        }
        finally
        {
            first.Dispose();
        }
    }

    /// <summary>Serves one blob; reads at or past <c>hangFrom</c> block until their cancellation token fires (bounded).</summary>
    private sealed class HangingBackend(byte[] content, long hangFrom) : IBlobBackend
    {
        public ManualResetEventSlim Hanging { get; } = new(false);

        public long GetBlobSize(string blobId) => content.Length;

        public void Read(string blobId, long offset, Span<byte> destination) =>
            Read(blobId, offset, destination, CancellationToken.None);

        public void Read(string blobId, long offset, Span<byte> destination, CancellationToken cancellation)
        {
            if (offset >= hangFrom)
            {
                Hanging.Set();
                if (!cancellation.WaitHandle.WaitOne(Bound))
                {
                    throw new StorageException(StorageErrorKind.BackendUnavailable, "never cancelled");
                }

                cancellation.ThrowIfCancellationRequested();
            }

            content.AsSpan((int)offset, destination.Length).CopyTo(destination);
        }

        public void Dispose() => Hanging.Dispose();
    }
}
