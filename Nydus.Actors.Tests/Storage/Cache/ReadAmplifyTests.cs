using Nydus.Actors.Storage.Cache;
using Nydus.Actors.Tests.Support;
using Xunit;

namespace Nydus.Actors.Tests.Storage.Cache;

/// <summary>amplify_io in the blob cache: an on-demand miss also brings the missing blocks that follow it.</summary>
public sealed class ReadAmplifyTests : IDisposable
{
    // Every test gets the caches of its own daemon, as the host makes one registry per daemon.
    private readonly BlobCacheRegistry _caches = new();

    public void Dispose() => _caches.Dispose();

    private const string BlobId = "amplified";

    private static byte[] Content(int size)
    {
        var content = new byte[size];
        new Random(11).NextBytes(content);
        return content;
    }

    [Fact]
    public void Miss_is_extended_over_following_missing_blocks_up_to_the_amplify_size()
    {
        using var dir = new TempDir("amplify");
        byte[] content = Content(1 << 20);
        var backend = new CountingBackend().Add(BlobId, content);
        using var cache = _caches.Open(new BlobCacheSettings { WorkDir = dir.Path, ReadAmplifyBytes = 256 << 10 }, backend);

        var small = new byte[100];
        cache.Read(BlobId, 5000, small);
        Assert.True(content.AsSpan(5000, 100).SequenceEqual(small));
        // One request from the block of the read on, 256 KiB long.
        Assert.Equal((4096L, 256 << 10), Assert.Single(backend.Ranges));

        // Everything inside it is a hit now.
        var inside = new byte[200_000];
        cache.Read(BlobId, 10_000, inside);
        Assert.True(content.AsSpan(10_000, 200_000).SequenceEqual(inside));
        Assert.Equal(1, backend.Reads);
        Assert.Equal(256 << 10, cache.Metrics.FetchedBytes);
    }

    [Fact]
    public void Amplification_stops_at_cached_data_and_at_the_blob_end()
    {
        using var dir = new TempDir("amplify-stop");
        byte[] content = Content(100_000);
        var backend = new CountingBackend().Add(BlobId, content);
        using var cache = _caches.Open(new BlobCacheSettings { WorkDir = dir.Path, ReadAmplifyBytes = 1 << 20 }, backend);
        // Block 10 cached without amplification (what a prefetcher does).
        cache.Fill(BlobId, 40_960, 4096);
        Assert.Equal((40_960L, 4096), backend.Ranges[^1]);

        cache.Read(BlobId, 0, new byte[10]);
        Assert.Equal((0L, 40_960), backend.Ranges[^1]);
        cache.Read(BlobId, 50_000, new byte[10]);
        Assert.Equal((49_152L, 100_000 - 49_152), backend.Ranges[^1]);
        var whole = new byte[content.Length];
        cache.Read(BlobId, 0, whole);
        Assert.True(content.AsSpan().SequenceEqual(whole));
        // Only block 11, between the cached block 10 and the amplified tail, was still missing.
        Assert.Equal((45_056L, 4096), backend.Ranges[^1]);
        Assert.Equal(4, backend.Reads);
    }

    [Fact]
    public void Without_amplification_a_miss_fetches_only_its_own_blocks()
    {
        using var dir = new TempDir("amplify-off");
        var backend = new CountingBackend().Add(BlobId, Content(100_000));
        using var cache = _caches.Open(new BlobCacheSettings { WorkDir = dir.Path }, backend);
        cache.Read(BlobId, 5000, new byte[100]);
        Assert.Equal((4096L, 4096), Assert.Single(backend.Ranges));
    }
}
