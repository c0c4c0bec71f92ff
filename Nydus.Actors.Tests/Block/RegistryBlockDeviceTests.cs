using System.Text;
using System.Text.Json;
using Nydus.Actors.Block;
using Nydus.Actors.Block.Nbd;
using Nydus.Actors.Config;
using Nydus.Actors.Tests.Support;
using Xunit;
using Nydus.Actors.Storage.Cache;

namespace Nydus.Actors.Tests.Block;

/// <summary>
/// The block device of the upstream RAFS v6 image whose blob lives in a real docker-registry, read through a cold
/// blob cache over NBD: nothing is fetched before the first read; the first nbdcopy (many requests in flight)
/// fetches every byte of the blob exactly once (the registry's access log); the second fetches nothing; the third is
/// served with the registry stopped.
/// </summary>
public sealed class RegistryBlockDeviceTests : IDisposable
{
    private const string Repo = "library/nydus-block";
    private readonly TempDir _dir = new("blk-registry");

    [Fact]
    public void Cold_cache_fetches_from_the_registry_once_then_serves_from_the_cache()
    {
        Assert.True(RegistryServer.IsAvailable, $"{RegistryServer.BinaryPath} is missing (build.sh installs docker-registry)");
        using var registry = RegistryServer.Start(accessLog: true);
        // A registry names blobs by their SHA-256, which the fixture's blob id is not (it leaves the digest bytes
        // out): push the blob and point a copy of the bootstrap at the id the registry gives it.
        string id = registry.Push(Repo, File.ReadAllBytes(Path.Combine(UpstreamBlockImage.BlobDir, UpstreamBlockImage.BlobId)));
        byte[] bootstrap = Rename(File.ReadAllBytes(UpstreamBlockImage.Bootstrap), UpstreamBlockImage.BlobId, id);
        string bootstrapPath = _dir.Combine("image.boot");
        File.WriteAllBytes(bootstrapPath, bootstrap);
        byte[] expected = Rename(UpstreamBlockImage.ExpectedDevice, UpstreamBlockImage.BlobId, id);
        long blobLength = new FileInfo(Path.Combine(UpstreamBlockImage.BlobDir, UpstreamBlockImage.BlobId)).Length;

        string config = $$"""
            {
              "version": 2,
              "backend": { "type": "registry", "registry": { "scheme": "http", "host": "{{registry.Host}}", "repo": "{{Repo}}", "timeout": 5, "connect_timeout": 5, "retry_limit": 0 } },
              "cache": { "type": "blobcache", "filecache": { "work_dir": {{JsonSerializer.Serialize(_dir.Combine("cache"))}} } },
              "rafs": { "mode": "direct", "validate": true }
            }
            """;
        using var caches = new BlobCacheRegistry();
        using var exports = new NbdExportTable();
        exports.TryAdd(new NbdExport("img", "", BlockImages.Open(bootstrapPath, NydusConfigLoader.Parse(config, "test"), "test", caches)));
        using var server = new NbdServer(exports);
        string socket = _dir.Combine("s");
        server.ListenUnix(socket);
        // The cache work dir is new. Opening the export reads the blob's chunk table (blob meta, after the chunk data
        // [0, 7802), MANIFEST.md §V6), no chunk data: at most the bytes past the data.
        const long chunkDataEnd = 7802;
        var atOpen = BlobGets(registry, id);
        Assert.True(atOpen.Sum(g => g.Bytes) <= blobLength - chunkDataEnd, $"opening fetched chunk data: {string.Join(", ", atOpen)}");

        TreeBuilder.Run("nbdcopy", $"nbd+unix:///img?socket={socket}", _dir.Combine("cold.img"));
        Assert.True(expected.AsSpan().SequenceEqual(File.ReadAllBytes(_dir.Combine("cold.img"))), "cold read differs");
        var cold = BlobGets(registry, id);
        Assert.True(cold.Count > atOpen.Count && cold.All(g => g.Status is 200 or 206), $"blob GETs: {string.Join(", ", cold)}");
        // Every needed range once: with the chunk table, the whole (small) blob is needed, and the bytes sent add up to
        // its length, no more.
        Assert.Equal(blobLength, cold.Sum(g => g.Bytes));

        TreeBuilder.Run("nbdcopy", $"nbd+unix:///img?socket={socket}", _dir.Combine("warm.img"));
        Assert.True(expected.AsSpan().SequenceEqual(File.ReadAllBytes(_dir.Combine("warm.img"))), "warm read differs");
        Assert.Equal(cold.Count, BlobGets(registry, id).Count);

        registry.Stop();
        TreeBuilder.Run("nbdcopy", $"nbd+unix:///img?socket={socket}", _dir.Combine("offline.img"));
        Assert.True(expected.AsSpan().SequenceEqual(File.ReadAllBytes(_dir.Combine("offline.img"))), "read from the cache alone differs");
    }

    /// <summary>
    /// The blob GETs in the registry's access log (status, bytes sent). A marker request is logged first and waited
    /// for (bounded), so every request made before it is in the log: the log is written in request order.
    /// </summary>
    private static List<(int Status, long Bytes)> BlobGets(RegistryServer registry, string id)
    {
        string marker = "/v2/marker-" + Guid.NewGuid().ToString("N");
        using (var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) })
            http.GetAsync(registry.BaseUrl + marker).GetAwaiter().GetResult().Dispose();
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (!registry.Output.Contains(marker, StringComparison.Ordinal))
        {
            Assert.True(DateTime.UtcNow < deadline, $"the registry's access log never showed {marker}:\n{registry.Output}");
            Thread.Sleep(20);
        }

        var line = new System.Text.RegularExpressions.Regex($"\"GET /v2/{Repo}/blobs/sha256:{id} HTTP/[0-9.]+\" (\\d{{3}}) (\\d+)");
        return line.Matches(registry.Output).Select(m => (int.Parse(m.Groups[1].Value), long.Parse(m.Groups[2].Value))).ToList();
    }

    private static byte[] Rename(byte[] bytes, string from, string to)
    {
        byte[] copy = (byte[])bytes.Clone();
        byte[] old = Encoding.ASCII.GetBytes(from), replacement = Encoding.ASCII.GetBytes(to);
        int replaced = 0;
        for (int at = copy.AsSpan().IndexOf(old); at >= 0; at = copy.AsSpan().IndexOf(old))
        {
            replacement.CopyTo(copy, at);
            replaced++;
        }

        Assert.True(replaced > 0, "the blob id was not found in the bootstrap");
        return copy;
    }

    public void Dispose() => _dir.Dispose();
}
