using System.Text.Json;
using Nydus.Actors.Config;
using Nydus.Actors.Daemon.Mounts;
using Nydus.Actors.Storage.Cache;
using Nydus.Actors.Storage.Prefetch;
using Nydus.Actors.Tests.Support;
using Xunit;

namespace Nydus.Actors.Tests.Storage.Prefetch;

/// <summary>A RAFS mount over registry + blob cache starts (and on dispose stops) the prefetch its config asks for.</summary>
public sealed class MountPrefetchTests : IDisposable
{
    // Every test gets the caches of its own daemon, as the host makes one registry per daemon.
    private readonly BlobCacheRegistry _caches = new();

    public void Dispose() => _caches.Dispose();

    private const string Repo = "library/nydus-fixture";
    private const string BlobId = "7334a2594e133cf8ae364189c2276b090fc490c627bcc3fb1077f0419a538e00";

    private static string Config(RegistryServer registry, string cacheDir, string prefetch) => $$"""
        {
          "version": 2,
          "backend": { "type": "registry", "registry": { "scheme": "http", "host": "{{registry.Host}}", "repo": "{{Repo}}", "timeout": 5, "connect_timeout": 5, "retry_limit": 1 } },
          "cache": { "type": "blobcache", "filecache": { "work_dir": {{JsonSerializer.Serialize(cacheDir)}} }{{prefetch}} },
          "rafs": { "mode": "direct" }
        }
        """;

    [Fact]
    public async Task Mount_with_cache_prefetch_all_fills_the_cache_with_the_image_blob()
    {
        Assert.True(RegistryServer.IsAvailable, $"{RegistryServer.BinaryPath} is missing (build.sh installs docker-registry)");
        using var registry = RegistryServer.Start();
        using var dir = new TempDir("mount-prefetch");
        byte[] blob = File.ReadAllBytes(ImageFixtures.UpstreamFile("repeatable", "blobs", BlobId));
        Assert.Equal(BlobId, registry.Push(Repo, blob));
        string bootstrap = ImageFixtures.UpstreamFile("repeatable", "sha256-nocompress-repeatable");
        string cacheDir = dir.Combine("cache");
        string text = Config(registry, cacheDir,
            """, "prefetch": { "enable": true, "prefetch_all": true, "threads": 2, "batch_size": 524288 }""");

        using (FilesystemInstance instance = FilesystemInstance.OpenRafs(bootstrap, NydusConfigLoader.Parse(text, "test"), "test", _caches))
        {
            BlobPrefetcher prefetcher = Assert.IsType<BlobPrefetcher>(instance.Prefetcher);
            await prefetcher.Completion.Within(TimeSpan.FromSeconds(60), $"prefetch still running: {prefetcher.Progress}");
            Assert.Equal(blob.Length, prefetcher.Progress.BytesPrefetched);
            Assert.Equal(0, prefetcher.Progress.PiecesFailed);
        }

        // The mount read nothing itself, so every byte in the cache is the prefetch's.
        registry.Stop();
        using var offline = _caches.Open(new BlobCacheSettings { WorkDir = cacheDir }, RequestCountingBackend.Refusing());
        var whole = new byte[blob.Length];
        offline.Read(BlobId, 0, whole);
        Assert.True(blob.AsSpan().SequenceEqual(whole));
    }

    [Fact]
    public void Mount_without_prefetch_all_starts_no_prefetcher()
    {
        Assert.True(RegistryServer.IsAvailable, $"{RegistryServer.BinaryPath} is missing (build.sh installs docker-registry)");
        using var registry = RegistryServer.Start();
        using var dir = new TempDir("mount-noprefetch");
        string bootstrap = ImageFixtures.UpstreamFile("repeatable", "sha256-nocompress-repeatable");
        string text = Config(registry, dir.Combine("cache"), """, "prefetch": { "enable": true }""");
        using FilesystemInstance instance = FilesystemInstance.OpenRafs(bootstrap, NydusConfigLoader.Parse(text, "test"), "test", _caches);
        Assert.Null(instance.Prefetcher);
    }
}
