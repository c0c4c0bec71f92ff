using Akka.Actor;
using Nydus.Actors.Storage.Cache;
using Nydus.Actors.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace Nydus.Actors.Tests.Storage.Cache;

/// <summary>The cache actor enforces the disk limit on real cache files, sparing blobs a mounted image uses.</summary>
public sealed class BlobCacheActorTests : Akka.TestKit.Xunit2.TestKit
{
    public BlobCacheActorTests(ITestOutputHelper output) : base(output: output)
    {
    }

    // Tests run in parallel in one process: each checks only the open caches under its own temp dir.
    private static Func<IEnumerable<BlobFileCache>> Under(TempDir dir) =>
        () => BlobFileCache.OpenCaches.Where(c => c.WorkDir.StartsWith(dir.Path, StringComparison.Ordinal)).ToList();

    private static byte[] Content(int size, int seed)
    {
        var bytes = new byte[size];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    [Fact]
    public void Periodic_check_evicts_least_recently_read_unpinned_blobs_down_to_the_limit()
    {
        using var dir = new TempDir("blobcache-actor");
        var backend = new CountingBackend()
            .Add("old", Content(100_000, 1)).Add("mid", Content(100_000, 2)).Add("inuse", Content(100_000, 3));
        using var cache = new BlobFileCache(new BlobCacheSettings { WorkDir = dir.Path }, backend);
        cache.Pin(["inuse"]);
        cache.Read("inuse", 0, new byte[100_000]); // read first: the least recent, yet pinned
        cache.Read("old", 0, new byte[100_000]);
        cache.Read("mid", 0, new byte[100_000]);
        Assert.Equal(3 * 102_400, cache.DiskUsageBytes);

        // The limit leaves room for two blobs: only "old" must go, "inuse" stays although it is the oldest read.
        Sys.ActorOf(BlobCacheActor.Props(new BlobCacheLimits(2 * 102_400, TimeSpan.FromMilliseconds(100)), Under(dir)));
        AwaitCondition(() => !File.Exists(dir.Combine("old.blob.data")), TimeSpan.FromSeconds(20));
        Assert.True(File.Exists(dir.Combine("inuse.blob.data")));
        Assert.True(File.Exists(dir.Combine("mid.blob.data")));
        Assert.Equal(2 * 102_400, cache.DiskUsageBytes);
        Assert.Equal(1, cache.Metrics.EvictedBlobs);

        // The evicted blob is fetched again on its next read, with the same bytes.
        long before = backend.Reads;
        var again = new byte[100_000];
        cache.Read("old", 0, again);
        Assert.Equal(Content(100_000, 1), again);
        Assert.True(backend.Reads > before);
    }

    [Fact]
    public void Unlimited_cache_is_never_trimmed_and_pinned_blobs_survive_a_zero_limit()
    {
        using var dir = new TempDir("blobcache-actor-nolimit");
        var backend = new CountingBackend().Add("a", Content(50_000, 4)).Add("b", Content(50_000, 5));
        using var cache = new BlobFileCache(new BlobCacheSettings { WorkDir = dir.Path }, backend);
        cache.Read("a", 0, new byte[50_000]);
        cache.Read("b", 0, new byte[50_000]);

        var unlimited = Sys.ActorOf(BlobCacheActor.Props(BlobCacheLimits.Unlimited, Under(dir)));
        unlimited.Tell(BlobCacheActor.Trim.Instance, TestActor);
        Assert.Equal(0, ExpectMsg<BlobCacheActor.Trimmed>(TimeSpan.FromSeconds(10)).FreedBytes);
        Assert.True(File.Exists(dir.Combine("a.blob.data")));

        cache.Pin(["b"]);
        var tiny = Sys.ActorOf(BlobCacheActor.Props(new BlobCacheLimits(1, TimeSpan.FromHours(1)), Under(dir)));
        tiny.Tell(BlobCacheActor.Trim.Instance, TestActor);
        ExpectMsg<BlobCacheActor.Trimmed>(TimeSpan.FromSeconds(10));
        Assert.False(File.Exists(dir.Combine("a.blob.data")));
        Assert.True(File.Exists(dir.Combine("b.blob.data")));
    }
}
