using System.Text;
using System.Text.Json;
using Nydus.Actors.Block;
using Nydus.Actors.Block.Nbd;
using Nydus.Actors.Config;
using Nydus.Actors.Tests.Support;
using Xunit;

namespace Nydus.Actors.Tests.Block;

/// <summary>
/// The block device of the upstream RAFS v6 image whose blob lives in a real docker-registry, read through a cold
/// blob cache over NBD: the first nbdcopy fetches from the registry, the second is served with the registry
/// stopped, so every block came from the registry once and from the cache after.
/// </summary>
public sealed class RegistryBlockDeviceTests : IDisposable
{
    private const string Repo = "library/nydus-block";
    private readonly TempDir _dir = new("blk-registry");

    [Fact]
    public void Cold_cache_fetches_from_the_registry_once_then_serves_from_the_cache()
    {
        Assert.True(RegistryServer.IsAvailable, $"{RegistryServer.BinaryPath} is missing (build.sh installs docker-registry)");
        using var registry = RegistryServer.Start();
        // A registry names blobs by their SHA-256, which the fixture's blob id is not (it leaves the digest bytes
        // out): push the blob and point a copy of the bootstrap at the id the registry gives it.
        string id = registry.Push(Repo, File.ReadAllBytes(Path.Combine(UpstreamBlockImage.BlobDir, UpstreamBlockImage.BlobId)));
        byte[] bootstrap = Rename(File.ReadAllBytes(UpstreamBlockImage.Bootstrap), UpstreamBlockImage.BlobId, id);
        string bootstrapPath = _dir.Combine("image.boot");
        File.WriteAllBytes(bootstrapPath, bootstrap);
        byte[] expected = Rename(UpstreamBlockImage.ExpectedDevice, UpstreamBlockImage.BlobId, id);

        string config = $$"""
            {
              "version": 2,
              "backend": { "type": "registry", "registry": { "scheme": "http", "host": "{{registry.Host}}", "repo": "{{Repo}}", "timeout": 5, "connect_timeout": 5, "retry_limit": 0 } },
              "cache": { "type": "blobcache", "filecache": { "work_dir": {{JsonSerializer.Serialize(_dir.Combine("cache"))}} } },
              "rafs": { "mode": "direct", "validate": true }
            }
            """;
        using var exports = new NbdExportTable();
        exports.TryAdd(new NbdExport("img", "", BlockImages.Open(bootstrapPath, NydusConfigLoader.Parse(config, "test"), "test")));
        using var server = new NbdServer(exports);
        string socket = _dir.Combine("s");
        server.ListenUnix(socket);
        // The cache work dir is new: nothing is cached before the first read.

        TreeBuilder.Run("nbdcopy", $"nbd+unix:///img?socket={socket}", _dir.Combine("cold.img"));
        Assert.True(expected.AsSpan().SequenceEqual(File.ReadAllBytes(_dir.Combine("cold.img"))), "cold read differs");

        registry.Stop();
        TreeBuilder.Run("nbdcopy", $"nbd+unix:///img?socket={socket}", _dir.Combine("warm.img"));
        Assert.True(expected.AsSpan().SequenceEqual(File.ReadAllBytes(_dir.Combine("warm.img"))), "read from the cache alone differs");
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
