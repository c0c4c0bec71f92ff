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

    // Each test has the caches of its own daemon (one registry, as the host makes per daemon); the actor disposes it.
    private readonly BlobCacheRegistry _caches = new();

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
        using var cache = _caches.Open(new BlobCacheSettings { WorkDir = dir.Path }, backend);
        cache.Pin(["inuse"]);
        cache.Read("inuse", 0, new byte[100_000]); // read first: the least recent, yet pinned
        cache.Read("old", 0, new byte[100_000]);
        cache.Read("mid", 0, new byte[100_000]);
        Assert.Equal(3 * 102_400, cache.DiskUsageBytes);

        // The limit leaves room for two blobs: only "old" must go, "inuse" stays although it is the oldest read.
        Sys.ActorOf(BlobCacheActor.Props(new BlobCacheLimits(2 * 102_400, TimeSpan.FromMilliseconds(100)), _caches));
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
        using var cache = _caches.Open(new BlobCacheSettings { WorkDir = dir.Path }, backend);
        cache.Read("a", 0, new byte[50_000]);
        cache.Read("b", 0, new byte[50_000]);

        var unlimited = Sys.ActorOf(BlobCacheActor.Props(BlobCacheLimits.Unlimited, _caches));
        unlimited.Tell(BlobCacheActor.Trim.Instance, TestActor);
        Assert.Equal(0, ExpectMsg<BlobCacheActor.Trimmed>(TimeSpan.FromSeconds(10)).FreedBytes);
        Assert.True(File.Exists(dir.Combine("a.blob.data")));

        cache.Pin(["b"]);
        var tiny = Sys.ActorOf(BlobCacheActor.Props(new BlobCacheLimits(1, TimeSpan.FromHours(1)), _caches));
        tiny.Tell(BlobCacheActor.Trim.Instance, TestActor);
        ExpectMsg<BlobCacheActor.Trimmed>(TimeSpan.FromSeconds(10));
        Assert.False(File.Exists(dir.Combine("a.blob.data")));
        Assert.True(File.Exists(dir.Combine("b.blob.data")));
    }

    [Fact]
    public void A_registry_trims_only_its_own_caches()
    {
        using var mine = new TempDir("blobcache-actor-mine");
        using var other = new TempDir("blobcache-actor-other");
        using var otherCaches = new BlobCacheRegistry();
        var backend = new CountingBackend().Add("a", Content(50_000, 6)).Add("b", Content(50_000, 7));
        using var cache = _caches.Open(new BlobCacheSettings { WorkDir = mine.Path }, backend);
        using var otherCache = otherCaches.Open(new BlobCacheSettings { WorkDir = other.Path }, backend);
        cache.Read("a", 0, new byte[50_000]);
        otherCache.Read("b", 0, new byte[50_000]);
        Assert.Equal([cache], _caches.OpenCaches);

        var tiny = Sys.ActorOf(BlobCacheActor.Props(new BlobCacheLimits(1, TimeSpan.FromHours(1)), _caches));
        tiny.Tell(BlobCacheActor.Trim.Instance, TestActor);
        Assert.Equal(53_248, ExpectMsg<BlobCacheActor.Trimmed>(TimeSpan.FromSeconds(10)).FreedBytes);
        Assert.False(File.Exists(mine.Combine("a.blob.data")));
        // Another daemon's registry (another test's) is not this actor's business, whatever its usage.
        Assert.True(File.Exists(other.Combine("b.blob.data")));
        Assert.Equal(53_248, otherCache.DiskUsageBytes);
    }

    [Fact]
    public void Stopping_the_actor_closes_the_caches_of_its_registry_and_flushes_their_maps()
    {
        using var dir = new TempDir("blobcache-actor-stop");
        var backend = new CountingBackend().Add("a", Content(50_000, 8));
        var cache = _caches.Open(new BlobCacheSettings { WorkDir = dir.Path }, backend);
        cache.Read("a", 0, new byte[50_000]);
        var actor = Sys.ActorOf(BlobCacheActor.Props(BlobCacheLimits.Unlimited, _caches));
        Watch(actor);
        Sys.Stop(actor);
        ExpectTerminated(actor, TimeSpan.FromSeconds(10));

        Assert.Empty(_caches.OpenCaches);
        Assert.Throws<ObjectDisposedException>(() => cache.Read("a", 0, new byte[10]));
        Assert.Throws<ObjectDisposedException>(() => _caches.Open(new BlobCacheSettings { WorkDir = dir.Path }, backend));
        // The map was flushed as the cache closed: a new daemon's cache serves the blob without the backend.
        long before = backend.Reads;
        using var restarted = new BlobCacheRegistry();
        using var again = restarted.Open(new BlobCacheSettings { WorkDir = dir.Path }, backend);
        var bytes = new byte[50_000];
        again.Read("a", 0, bytes);
        Assert.Equal(Content(50_000, 8), bytes);
        Assert.Equal(before, backend.Reads);
    }
}
