using Nydus.Actors.Storage;
using Nydus.Actors.Storage.Backends;
using Nydus.Actors.Storage.Cache;
using Nydus.Actors.Storage.Compression;
using Nydus.Actors.Storage.Digest;
using Nydus.Actors.Tests.Support;
using Xunit;

namespace Nydus.Actors.Tests.Storage.Cache;

public sealed class BlobFileCacheTests : IDisposable
{
    // Every test gets the caches of its own daemon, as the host makes one registry per daemon.
    private readonly BlobCacheRegistry _caches = new();

    public void Dispose() => _caches.Dispose();

    private const string BlobId = "0123456789abcdef";

    private static byte[] Content(int size = 300_000, int seed = 3)
    {
        var content = new byte[size];
        new Random(seed).NextBytes(content);
        return content;
    }

    [Fact]
    public void Second_read_of_a_range_is_served_from_the_cache_files()
    {
        using var dir = new TempDir("blobcache");
        byte[] content = Content();
        var backend = new CountingBackend().Add(BlobId, content);
        using var cache = _caches.Open(new BlobCacheSettings { WorkDir = dir.Path }, backend);

        var first = new byte[10_000];
        cache.Read(BlobId, 12_345, first);
        Assert.True(content.AsSpan(12_345, 10_000).SequenceEqual(first));
        Assert.Equal(1, backend.Reads);
        // The miss fetched whole 4 KiB blocks around the range.
        Assert.Equal((12_288L, 12_288), backend.Ranges[0]);

        var again = new byte[10_000];
        cache.Read(BlobId, 12_345, again);
        cache.Read(BlobId, 13_000, again.AsSpan(0, 5000));
        Assert.Equal(1, backend.Reads);
        Assert.Equal(2, cache.Metrics.Hits);
        Assert.Equal(1, cache.Metrics.Misses);
        Assert.True(content.AsSpan(13_000, 5000).SequenceEqual(again.AsSpan(0, 5000)));

        // The tail block is partial: the fetch stops at the blob's end.
        var tail = new byte[100];
        cache.Read(BlobId, content.Length - 100, tail);
        Assert.True(content.AsSpan(content.Length - 100).SequenceEqual(tail));
        StorageException e = Assert.Throws<StorageException>(() => cache.Read(BlobId, content.Length - 10, new byte[20]));
        Assert.Equal(StorageErrorKind.BlobTooShort, e.Kind);
        Assert.True(File.Exists(dir.Combine(BlobId + ".blob.data")));
        Assert.True(File.Exists(dir.Combine(BlobId + ".chunk_map")));
    }

    [Fact]
    public void A_new_cache_over_the_same_work_dir_serves_cached_ranges_without_the_backend()
    {
        using var dir = new TempDir("blobcache-restart");
        byte[] content = Content();
        var backend = new CountingBackend().Add(BlobId, content);
        using (var cache = _caches.Open(new BlobCacheSettings { WorkDir = dir.Path }, backend))
        {
            cache.Read(BlobId, 0, new byte[50_000]);
            cache.Read(BlobId, 200_000, new byte[1000]);
        }

        using var restarted = _caches.Open(new BlobCacheSettings { WorkDir = dir.Path }, new RefusingBackend());
        Assert.Equal(content.Length, restarted.GetBlobSize(BlobId));
        var part = new byte[40_000];
        restarted.Read(BlobId, 5000, part);
        Assert.True(content.AsSpan(5000, 40_000).SequenceEqual(part));
        restarted.Read(BlobId, 200_100, part.AsSpan(0, 800));
        Assert.True(content.AsSpan(200_100, 800).SequenceEqual(part.AsSpan(0, 800)));
        Assert.Equal(2, restarted.Metrics.Hits);
        Assert.True(restarted.DiskUsageBytes >= 51_000);

        // Anything not cached before the restart does need the backend.
        StorageException e = Assert.Throws<StorageException>(() => restarted.Read(BlobId, 100_000, new byte[10]));
        Assert.Contains("refusing", e.Message);
    }

    [Fact]
    public void Eight_concurrent_readers_of_one_missing_chunk_cause_one_backend_fetch()
    {
        using var dir = new TempDir("blobcache-flight");
        byte[] content = Content();
        var backend = new GatedBackend(content);
        using var cache = _caches.Open(new BlobCacheSettings { WorkDir = dir.Path }, backend);
        cache.GetBlobSize(BlobId);

        var results = new byte[8][];
        var errors = new List<Exception>();
        var threads = new Thread[8];
        for (int i = 0; i < threads.Length; i++)
        {
            int index = i;
            threads[i] = new Thread(() =>
            {
                try
                {
                    results[index] = new byte[65_536];
                    cache.Read(BlobId, 65_536, results[index]);
                }
                catch (Exception e)
                {
                    lock (errors) errors.Add(e);
                }
            });
            threads[i].Start();
        }

        // Every reader has found the chunk missing (and all but one wait for the fetch) before the fetch completes.
        Assert.True(SpinWait.SpinUntil(() => cache.Metrics.Misses == 8, TimeSpan.FromSeconds(20)),
            $"only {cache.Metrics.Misses} readers arrived");
        backend.Open.Set();
        foreach (Thread thread in threads)
        {
            Assert.True(thread.Join(TimeSpan.FromSeconds(20)));
        }

        Assert.Empty(errors);
        Assert.Equal(1, backend.Reads);
        foreach (byte[] result in results)
        {
            Assert.True(content.AsSpan(65_536, 65_536).SequenceEqual(result));
        }
    }

    [Fact]
    public void Corrupted_cached_chunk_fails_its_digest_and_is_fetched_again()
    {
        using var dir = new TempDir("blobcache-corrupt");
        byte[] content = Content();
        var backend = new CountingBackend().Add(BlobId, content);
        using var cache = _caches.Open(new BlobCacheSettings { WorkDir = dir.Path }, backend);
        var blob = new BlobRef(BlobId, cache, CompressionAlgorithm.None, DigestAlgorithm.Sha256);
        var digest = new byte[32];
        ChunkDigester.Compute(DigestAlgorithm.Sha256, content.AsSpan(20_000, 8000), digest);
        ChunkRequest chunk = new()
        {
            Blob = blob,
            ChunkIndex = 7,
            CompressedOffset = 20_000,
            CompressedSize = 8000,
            UncompressedSize = 8000,
            IsCompressed = false,
            Digest = digest,
            SliceStart = 0,
            SliceLength = 8000,
            DestinationOffset = 0,
        };
        var destination = new byte[8000];
        IChunkReader reader = new CachedChunkReader(cache);
        reader.Read([chunk], destination, validateDigests: true, BlobChunkReader.DefaultMergeSize);
        Assert.Equal(1, backend.Reads);

        // Flip a byte of the chunk inside the cache file, as a disk fault would.
        using (var data = File.Open(dir.Combine(BlobId + ".blob.data"), FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite))
        {
            data.Position = 24_000;
            int b = data.ReadByte();
            data.Position = 24_000;
            data.WriteByte((byte)(b ^ 0xFF));
        }

        Array.Clear(destination);
        StorageException plain = Assert.Throws<StorageException>(() => BlobChunkReader.Read([chunk], destination, true));
        Assert.Equal(StorageErrorKind.DigestMismatch, plain.Kind);

        reader.Read([chunk], destination, validateDigests: true, BlobChunkReader.DefaultMergeSize);
        Assert.True(content.AsSpan(20_000, 8000).SequenceEqual(destination));
        Assert.Equal(2, backend.Reads);
        Assert.Equal(1, cache.Metrics.Invalidations);

        // Healed: the next read is a hit again.
        reader.Read([chunk], destination, validateDigests: true, BlobChunkReader.DefaultMergeSize);
        Assert.Equal(2, backend.Reads);
    }

    [Fact]
    public void Trim_evicts_least_recently_read_blobs_but_not_one_being_read()
    {
        using var dir = new TempDir("blobcache-evict");
        var backend = new CountingBackend().Add("older", Content(100_000, 1)).Add("newer", Content(100_000, 2));
        using var cache = _caches.Open(new BlobCacheSettings { WorkDir = dir.Path, DiskLimitBytes = 150_000 }, backend);
        cache.Read("older", 0, new byte[100_000]);
        cache.Read("newer", 0, new byte[100_000]);
        // Usage counts whole 4 KiB blocks: 100,000 bytes occupy 25 of them.
        Assert.Equal(2 * 102_400, cache.DiskUsageBytes);

        long freed = cache.TrimToLimit();
        Assert.Equal(102_400, freed);
        Assert.False(File.Exists(dir.Combine("older.blob.data")));
        Assert.False(File.Exists(dir.Combine("older.chunk_map")));
        Assert.True(File.Exists(dir.Combine("newer.blob.data")));
        Assert.Equal(1, cache.Metrics.EvictedBlobs);

        // A blob with a reader inside (blocked in its fetch) is never evicted.
        byte[] gated = Content(100_000, 4);
        var gate = new GatedBackend(gated);
        using var busy = _caches.Open(new BlobCacheSettings { WorkDir = dir.Combine("busy") }, gate);
        busy.GetBlobSize(BlobId);
        var reader = new Thread(() => busy.Read(BlobId, 0, new byte[100_000]));
        reader.Start();
        Assert.True(SpinWait.SpinUntil(() => gate.Reads == 1, TimeSpan.FromSeconds(20)));
        Assert.Equal(0, busy.TrimToLimit(0));
        gate.Open.Set();
        Assert.True(reader.Join(TimeSpan.FromSeconds(20)));
        Assert.Equal(102_400, busy.TrimToLimit(0));
    }

    [Fact]
    public void Cache_over_the_registry_backend_serves_repeated_reads_without_registry_requests()
    {
        using RegistryServer registry = RegistryServer.Start();
        byte[] content = File.ReadAllBytes(ImageFixtures.UpstreamFile("repeatable", "blobs",
            "d7b86b1e74e316fe945741d1a9fa1b271459fe41481e304977659e0c6ecf56ac"));
        string id = registry.Push("nydus/test-image", content);
        using var dir = new TempDir("blobcache-registry");
        using var remote = new Nydus.Actors.Storage.Backends.RegistryBackend(
            Registry.RegistryBackendTests.Settings(registry.Host));
        using var cache = _caches.Open(new BlobCacheSettings { WorkDir = dir.Path }, remote);
        var part = new byte[123_456];
        cache.Read(id, 654_321, part);
        Assert.True(content.AsSpan(654_321, part.Length).SequenceEqual(part));
        long reads = remote.Metrics.ReadCount;
        long requests = remote.RegistryRequests;

        registry.Stop();
        Array.Clear(part);
        cache.Read(id, 654_321, part);
        Assert.True(content.AsSpan(654_321, part.Length).SequenceEqual(part));
        Assert.Equal(reads, remote.Metrics.ReadCount);
        Assert.Equal(requests, remote.RegistryRequests);
    }

    /// <summary>A backend that fails every call: proves a read was served without it.</summary>
    private sealed class RefusingBackend : IBlobBackend
    {
        public long GetBlobSize(string blobId) =>
            throw new StorageException(StorageErrorKind.BackendUnavailable, $"refusing size of {blobId}");

        public void Read(string blobId, long offset, Span<byte> destination) =>
            throw new StorageException(StorageErrorKind.BackendUnavailable, $"refusing read of {blobId}");

        public void Dispose()
        {
        }
    }

    /// <summary>Serves one blob, but every read waits for <see cref="Open"/> (bounded).</summary>
    private sealed class GatedBackend(byte[] content) : IBlobBackend
    {
        private int _reads;

        public ManualResetEventSlim Open { get; } = new(false);

        public int Reads => Volatile.Read(ref _reads);

        public long GetBlobSize(string blobId) => content.Length;

        public void Read(string blobId, long offset, Span<byte> destination)
        {
            Interlocked.Increment(ref _reads);
            if (!Open.Wait(TimeSpan.FromSeconds(30)))
            {
                throw new StorageException(StorageErrorKind.BackendUnavailable, "gate never opened");
            }

            content.AsSpan((int)offset, destination.Length).CopyTo(destination);
        }

        public void Dispose() => Open.Dispose();
    }
}
