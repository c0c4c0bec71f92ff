using System.Diagnostics;
using Nydus.Actors.Config;
using Nydus.Actors.Storage;
using Nydus.Actors.Storage.Backends;
using Nydus.Actors.Storage.Cache;
using Nydus.Actors.Storage.Prefetch;
using Nydus.Actors.Tests.Storage.Registry;
using Nydus.Actors.Tests.Support;
using Xunit;

namespace Nydus.Actors.Tests.Storage.Prefetch;

/// <summary>Whole-blob prefetch into the blob cache, against a real docker-registry and in-memory backends.</summary>
public sealed class BlobPrefetcherTests : IDisposable
{
    // Every test gets the caches of its own daemon, as the host makes one registry per daemon.
    private readonly BlobCacheRegistry _caches = new();

    public void Dispose() => _caches.Dispose();

    private const string Repo = "nydus/test-image";
    private static readonly TimeSpan CompletionTimeout = TimeSpan.FromSeconds(60);

    private static byte[] FixtureBlob() => File.ReadAllBytes(
        ImageFixtures.UpstreamFile("repeatable", "blobs", "7334a2594e133cf8ae364189c2276b090fc490c627bcc3fb1077f0419a538e00"));

    private static PrefetchConfigV2 PrefetchAll(ulong batch, ulong threads = 4, uint bandwidth = 0) => new()
    {
        Enable = true,
        PrefetchAll = true,
        BatchSize = batch,
        Threads = threads,
        BandwidthLimit = bandwidth,
    };

    private static void AssertCompletes(BlobPrefetcher prefetcher) =>
        Assert.True(prefetcher.Completion.Wait(CompletionTimeout), $"prefetch still running: {prefetcher.Progress}");

    [Fact]
    public void Prefetch_all_brings_the_whole_blob_into_the_cache_in_merged_pieces()
    {
        Assert.True(RegistryServer.IsAvailable, $"{RegistryServer.BinaryPath} is missing (build.sh installs docker-registry)");
        using var registry = RegistryServer.Start();
        using var dir = new TempDir("prefetch-all");
        byte[] content = FixtureBlob();
        string blobId = registry.Push(Repo, content);
        const int Batch = 256 * 1024;
        int pieces = (content.Length + Batch - 1) / Batch;

        var network = new RequestCountingBackend(new RegistryBackend(RegistryBackendTests.Settings(registry.Host)));
        using (var cache = _caches.Open(new BlobCacheSettings { WorkDir = dir.Path }, network))
        using (var prefetcher = new BlobPrefetcher(cache, [new PrefetchBlob(blobId)], PrefetchAll(Batch)))
        {
            AssertCompletes(prefetcher);
            PrefetchProgress progress = prefetcher.Progress;
            Assert.Equal(pieces, progress.PiecesTotal);
            Assert.Equal(pieces, progress.PiecesDone);
            Assert.Equal(0, progress.PiecesFailed);
            Assert.Equal(0, progress.PiecesRemaining);
            Assert.Equal(content.Length, progress.BytesPrefetched);
            Assert.NotNull(progress.StartedAt);
            Assert.True(progress.FinishedAt >= progress.StartedAt);
            // One backend request per piece: batch_size merges, nothing is fetched twice.
            Assert.Equal(pieces, network.Reads);
            Assert.Equal(content.Length, cache.Metrics.FetchedBytes);
        }

        // No network at all now: every byte must come from the cache files the prefetch wrote.
        var refusing = RequestCountingBackend.Refusing();
        using var offline = _caches.Open(new BlobCacheSettings { WorkDir = dir.Path }, refusing);
        var whole = new byte[content.Length];
        offline.Read(blobId, 0, whole);
        Assert.True(content.AsSpan().SequenceEqual(whole), "cached blob differs from the pushed blob");
        Assert.Equal(0, refusing.Reads);
    }

    [Fact]
    public void Bandwidth_limit_of_1_MiB_per_second_stretches_a_3_5_MB_blob_over_at_least_2_5_seconds()
    {
        Assert.True(RegistryServer.IsAvailable, $"{RegistryServer.BinaryPath} is missing (build.sh installs docker-registry)");
        using var registry = RegistryServer.Start();
        using var dir = new TempDir("prefetch-throttle");
        byte[] content = FixtureBlob();
        string blobId = registry.Push(Repo, content);

        using var cache = _caches.Open(new BlobCacheSettings { WorkDir = dir.Path },
            new RegistryBackend(RegistryBackendTests.Settings(registry.Host)));
        var clock = Stopwatch.StartNew();
        using var prefetcher = new BlobPrefetcher(cache, [new PrefetchBlob(blobId, content.Length)],
            PrefetchAll(batch: 256 * 1024, threads: 4, bandwidth: 1024 * 1024));
        AssertCompletes(prefetcher);
        clock.Stop();

        Assert.Equal(content.Length, prefetcher.Progress.BytesPrefetched);
        // Usage counts whole 4 KiB blocks, the blob's partial last one included.
        Assert.Equal((content.Length + 4095L) / 4096 * 4096, cache.DiskUsageBytes);
        // 3.35 MiB at 1 MiB/s from an empty bucket is about 3.3 s; unthrottled it takes milliseconds.
        Assert.True(clock.Elapsed >= TimeSpan.FromSeconds(2.5), $"throttled prefetch took only {clock.Elapsed}");
    }

    [Fact]
    public async Task Dispose_during_a_slow_prefetch_returns_promptly_and_stops_backend_requests()
    {
        Assert.True(RegistryServer.IsAvailable, $"{RegistryServer.BinaryPath} is missing (build.sh installs docker-registry)");
        using var registry = RegistryServer.Start();
        using var dir = new TempDir("prefetch-cancel");
        byte[] content = FixtureBlob();
        string blobId = registry.Push(Repo, content);

        var network = new RequestCountingBackend(new RegistryBackend(RegistryBackendTests.Settings(registry.Host)),
            delay: TimeSpan.FromMilliseconds(50));
        using var cache = _caches.Open(new BlobCacheSettings { WorkDir = dir.Path }, network);
        var prefetcher = new BlobPrefetcher(cache, [new PrefetchBlob(blobId)],
            PrefetchAll(batch: 64 * 1024, threads: 2, bandwidth: 256 * 1024));
        try
        {
            Assert.True(SpinWait.SpinUntil(() => network.Reads >= 3, TimeSpan.FromSeconds(30)),
                $"prefetch made only {network.Reads} requests");
        }
        finally
        {
            // Bounded by the prefetcher itself (DisposeGrace): it does not wait out a backend read in flight.
            prefetcher.Dispose();
        }

        // A worker inside a backend read when Dispose came ends with that read, which a loaded machine may stretch past
        // Dispose's grace: awaited here, bounded. Workers that kept fetching would fail below (the blob fetched whole)
        // or here (still running after 30 s: at 256 KiB/s the 3.35 MiB blob takes 13 s).
        await prefetcher.Completion.Within(TimeSpan.FromSeconds(30), "workers still running 30 s after Dispose");
        int afterStop = network.Reads;
        Thread.Sleep(TimeSpan.FromMilliseconds(700));
        Assert.Equal(afterStop, network.Reads);

        PrefetchProgress progress = prefetcher.Progress;
        Assert.NotNull(progress.FinishedAt);
        Assert.True(progress.PiecesRemaining > 0, $"the whole blob was fetched before Dispose: {progress}");
        Assert.Equal(0, progress.PiecesFailed);
    }

    /// <summary>A backend read cannot be interrupted: Dispose does not wait it out (an unmount must not hang on a dead
    /// registry), and the read that ends later is neither counted as a failure nor followed by another.</summary>
    [Fact]
    public async Task Dispose_returns_while_a_backend_read_never_ends_and_the_late_read_is_dropped()
    {
        using var dir = new TempDir("prefetch-hung");
        using var gate = new ManualResetEventSlim();
        var backend = new GatedBackend(gate, size: 4 << 20);
        using var cache = _caches.Open(new BlobCacheSettings { WorkDir = dir.Path }, backend);
        var prefetcher = new BlobPrefetcher(cache, [new PrefetchBlob("blob-hung")], PrefetchAll(batch: 64 * 1024, threads: 2));
        try
        {
            Assert.True(SpinWait.SpinUntil(() => backend.Waiting == 2, TimeSpan.FromSeconds(30)), $"{backend.Waiting} reads reached the backend");
            var disposing = Task.Run(prefetcher.Dispose);
            await disposing.Within(TimeSpan.FromSeconds(30), "Dispose waited for a backend read that never ends");
            Assert.False(prefetcher.Completion.IsCompleted, "the workers ended although their reads are still held");
        }
        finally
        {
            gate.Set();
        }

        await prefetcher.Completion.Within(TimeSpan.FromSeconds(30), "workers still running 30 s after their reads ended");
        Assert.Equal(2, backend.Reads);
        Assert.Equal(0, prefetcher.Progress.PiecesFailed);
    }

    /// <summary>Every read waits on a gate; counts the reads begun and those waiting.</summary>
    private sealed class GatedBackend(ManualResetEventSlim gate, long size) : IBlobBackend
    {
        private int _reads, _waiting;
        public int Reads => Volatile.Read(ref _reads);
        public int Waiting => Volatile.Read(ref _waiting);

        public long GetBlobSize(string blobId) => size;

        public void Read(string blobId, long offset, Span<byte> destination)
        {
            Interlocked.Increment(ref _reads);
            Interlocked.Increment(ref _waiting);
            gate.Wait(TimeSpan.FromMinutes(2));
            Interlocked.Decrement(ref _waiting);
            destination.Clear();
        }

        public void Dispose()
        {
        }
    }

    [Fact]
    public void Ranges_already_cached_cause_no_backend_request()
    {
        using var dir = new TempDir("prefetch-skip");
        var content = new byte[1_000_000];
        new Random(5).NextBytes(content);
        var memory = new CountingBackend().Add("blob-a", content);
        using var cache = _caches.Open(new BlobCacheSettings { WorkDir = dir.Path }, memory);
        // Pieces of 128 KiB: pieces 0 and 1 fully cached, piece 2 half cached.
        cache.Read("blob-a", 0, new byte[3 * 65_536 + 65_536 * 2 + 1000]);
        int before = memory.Reads;

        using var prefetcher = new BlobPrefetcher(cache, [new PrefetchBlob("blob-a")], PrefetchAll(batch: 128 * 1024, threads: 1));
        AssertCompletes(prefetcher);

        int pieces = (content.Length + 131_071) / 131_072;
        Assert.Equal(pieces, prefetcher.Progress.PiecesDone);
        // Pieces 0 and 1 are skipped; piece 2 fetches only its missing half.
        Assert.Equal(pieces - 2, memory.Reads - before);
        Assert.Contains(memory.Ranges, range => range.Offset == 5 * 65_536 + 4096 && range.Length == 65_536 - 4096);
        int afterPrefetch = memory.Reads;
        var whole = new byte[content.Length];
        cache.Read("blob-a", 0, whole);
        Assert.True(content.AsSpan().SequenceEqual(whole));
        Assert.Equal(afterPrefetch, memory.Reads);
    }

    [Fact]
    public void Backend_failures_are_counted_and_logged_never_thrown()
    {
        using var dir = new TempDir("prefetch-fail");
        var refusing = RequestCountingBackend.Refusing();
        using var cache = _caches.Open(new BlobCacheSettings { WorkDir = dir.Path }, refusing);
        // One blob whose size cannot be learned, one with a known size whose every piece fails.
        using var prefetcher = new BlobPrefetcher(cache, [new PrefetchBlob("unsized"), new PrefetchBlob("sized", 300_000)],
            PrefetchAll(batch: 100_000, threads: 2));
        AssertCompletes(prefetcher);

        PrefetchProgress progress = prefetcher.Progress;
        Assert.Equal(1, progress.BlobsFailed);
        Assert.Equal(3, progress.PiecesTotal);
        Assert.Equal(3, progress.PiecesFailed);
        Assert.Equal(0, progress.PiecesDone);
        Assert.Equal(0, progress.BytesPrefetched);
        Assert.NotNull(progress.FinishedAt);
    }

    [Fact]
    public void Without_prefetch_all_nothing_is_fetched()
    {
        using var dir = new TempDir("prefetch-off");
        var memory = new CountingBackend().Add("blob-a", new byte[10_000]);
        using var cache = _caches.Open(new BlobCacheSettings { WorkDir = dir.Path }, memory);
        using var prefetcher = new BlobPrefetcher(cache, [new PrefetchBlob("blob-a")], PrefetchAll(4096) with { PrefetchAll = false });
        Assert.True(prefetcher.Completion.IsCompleted);
        Assert.Equal(0, memory.Reads);
        Assert.Null(prefetcher.Progress.StartedAt);
    }
}
