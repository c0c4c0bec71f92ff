using Nydus.Actors.Storage.Cache;
using Nydus.Actors.Tests.Support;
using Xunit;

namespace Nydus.Actors.Tests.Storage.Cache;

/// <summary>
/// The blob cache's files as nydus-snapshotter's cache manager sees them: its usage report and garbage collection
/// (pkg/cache/manager.go, re-implemented below as a test vector) must find and remove every file we write, and
/// caches of our first layout or of upstream's format must be migrated or ignored, never misread.
/// </summary>
public sealed class SnapshotterCacheLayoutTests : IDisposable
{
    // Every test gets the caches of its own daemon, as the host makes one registry per daemon.
    private readonly BlobCacheRegistry _caches = new();

    public void Dispose() => _caches.Dispose();

    private static byte[] Content(int size, int seed)
    {
        var content = new byte[size];
        new Random(seed).NextBytes(content);
        return content;
    }

    [Fact]
    public void Snapshotter_usage_scan_counts_every_cache_file_and_its_gc_removes_them()
    {
        using var dir = new TempDir("snapshotter-cache");
        string blobA = new string('a', 64), blobB = new string('b', 64);
        var backend = new CountingBackend().Add(blobA, Content(300_000, 1)).Add(blobB, Content(200_000, 2));
        using (var cache = _caches.Open(new BlobCacheSettings { WorkDir = dir.Path }, backend))
        {
            cache.Read(blobA, 0, new byte[300_000]);
            cache.Read(blobB, 50_000, new byte[10_000]);
        }

        // Every file in the cache dir belongs to a blob by the snapshotter's naming, and its usage of a blob
        // covers all of that blob's files: the sum over blobs is the whole directory.
        string[] files = Directory.GetFiles(dir.Path).Select(Path.GetFileName).ToArray()!;
        Assert.Equal(new[] { blobA, blobB },
            files.Select(SnapshotterCacheManager.ExtractBlobIdFromFilename).Distinct().Order().ToArray());
        long total = Directory.GetFiles(dir.Path).Sum(ContainerdDiskUsage.Of);
        long usageA = SnapshotterCacheManager.CacheUsage(dir.Path, blobA);
        long usageB = SnapshotterCacheManager.CacheUsage(dir.Path, blobB);
        Assert.True(usageA >= 300_000, $"usage of a fully read 300,000-byte blob reported as {usageA}");
        Assert.True(usageB > 0 && usageB < usageA, $"usage of a partly read blob: {usageB} (full one: {usageA})");
        Assert.Equal(total, usageA + usageB);

        // Its GC of blob A leaves nothing of A, and B still serves from the cache alone.
        SnapshotterCacheManager.RemoveBlobCache(dir.Path, blobA);
        Assert.DoesNotContain(Directory.GetFiles(dir.Path),
            f => SnapshotterCacheManager.ExtractBlobIdFromFilename(Path.GetFileName(f)) == blobA);
        int readsBefore = backend.Reads;
        using (var cache = _caches.Open(new BlobCacheSettings { WorkDir = dir.Path }, backend))
        {
            var part = new byte[10_000];
            cache.Read(blobB, 50_000, part);
            Assert.Equal(readsBefore, backend.Reads);
            Assert.True(Content(200_000, 2).AsSpan(50_000, 10_000).SequenceEqual(part));

            // A removed blob is fetched again, correctly.
            var whole = new byte[300_000];
            cache.Read(blobA, 0, whole);
            Assert.True(whole.AsSpan().SequenceEqual(Content(300_000, 1)));
            Assert.True(backend.Reads > readsBefore);
        }
    }

    [Fact]
    public void Cache_of_the_first_layout_is_renamed_and_served_without_the_backend()
    {
        using var dir = new TempDir("legacy-cache");
        string blob = new string('c', 64);
        byte[] content = Content(120_000, 3);
        var backend = new CountingBackend().Add(blob, content);
        using (var cache = _caches.Open(new BlobCacheSettings { WorkDir = dir.Path }, backend))
        {
            cache.Read(blob, 0, new byte[content.Length]);
        }

        // What the previous build left: the same contents under .raw.data / .raw.map.
        File.Move(dir.Combine(blob + ".blob.data"), dir.Combine(blob + ".raw.data"));
        File.Move(dir.Combine(blob + ".chunk_map"), dir.Combine(blob + ".raw.map"));
        int reads = backend.Reads;

        using (var cache = _caches.Open(new BlobCacheSettings { WorkDir = dir.Path }, backend))
        {
            // Seen at start (usage and eviction count it) before any read.
            Assert.Equal(122_880, cache.DiskUsageBytes);
            var again = new byte[content.Length];
            cache.Read(blob, 0, again);
            Assert.True(again.AsSpan().SequenceEqual(content));
            Assert.Equal(reads, backend.Reads);
        }

        Assert.Equal(new[] { blob + ".blob.data", blob + ".chunk_map" },
            Directory.GetFiles(dir.Path).Select(Path.GetFileName).Order().ToArray());
    }

    [Fact]
    public void Upstream_format_chunk_map_is_never_taken_for_ours()
    {
        using var dir = new TempDir("foreign-cache");
        string blob = new string('d', 64);
        byte[] content = Content(64_000, 4);
        // Upstream's IndexedChunkMap header (magic, version, chunk count) and a data file of other bytes.
        var upstreamMap = new byte[4096];
        BitConverter.TryWriteBytes(upstreamMap.AsSpan(0), 0x434D4150u);
        BitConverter.TryWriteBytes(upstreamMap.AsSpan(4), 1u);
        Array.Fill(upstreamMap, (byte)0xff, 16, 4080);
        File.WriteAllBytes(dir.Combine(blob + ".chunk_map"), upstreamMap);
        File.WriteAllBytes(dir.Combine(blob + ".blob.data"), new byte[content.Length]);

        var backend = new CountingBackend().Add(blob, content);
        using var cache = _caches.Open(new BlobCacheSettings { WorkDir = dir.Path }, backend);
        var read = new byte[content.Length];
        cache.Read(blob, 0, read);
        Assert.True(read.AsSpan().SequenceEqual(content));
        Assert.True(backend.Reads > 0, "the foreign map was believed: nothing was fetched");
    }
}
