using System.Security.Cryptography;
using System.Text.Json;
using Nydus.Actors.Api;
using Nydus.Actors.Interop;
using Nydus.Actors.Tests.Support;
using Nydus.Bench.Registry;
using Xunit;

namespace Nydus.Actors.Tests.RegistryFuse;

/// <summary>
/// Read-ahead of on-demand reads through the real nydusd over a real docker-registry on 127.0.0.1, with a generated
/// RAFS v5 tree whose files are packed back to back in one uncompressed blob in tree order (so a walk in tree order
/// reads the blob in order, and the concatenation of every file is the blob).
/// </summary>
public sealed class RegistryReadAheadMountTests : IDisposable
{
    private const string Repo = "library/nydus-readahead";
    private const int Dirs = 8;
    private const int FilesPerDir = 100;
    private const int MaxFileSize = 8192;

    /// <summary>rafs.batch_size: the size of every request, read-aheads included. The ~3.3 MB blob is ~13 of them.</summary>
    private const int BatchSize = 256 << 10;

    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);
    private readonly TempDir _dir = new("registry-readahead");

    private string CacheDir => _dir.Combine("cache");

    private string Config(RegistryServer registry) => $$"""
        {
          "version": 2,
          "backend": { "type": "registry", "registry": { "scheme": "http", "host": "{{registry.Host}}", "repo": "{{Repo}}", "timeout": 3, "connect_timeout": 3, "retry_limit": 1 } },
          "cache": { "type": "blobcache", "filecache": { "work_dir": {{JsonSerializer.Serialize(CacheDir)}} } },
          "rafs": { "mode": "direct", "validate": true, "batch_size": {{BatchSize}} }
        }
        """;

    private (RafsV5TreeWriter.Image Image, byte[] Blob) WriteImage()
    {
        string dir = _dir.Combine("image");
        Directory.CreateDirectory(dir);
        var image = RafsV5TreeWriter.Write(dir, Dirs, FilesPerDir, MaxFileSize);
        return (image, File.ReadAllBytes(image.BlobPath));
    }

    private static IEnumerable<string> TreeOrder()
    {
        for (int d = 0; d < Dirs; d++)
        for (int f = 0; f < FilesPerDir; f++)
            yield return $"/d{d:D3}/f{f:D4}.bin";
    }

    private static async Task<JsonElement> MetricsAsync(string socket, string which)
    {
        using var client = new ApiClient(socket);
        var (status, body) = await client.SendAsync("GET", $"/api/v1/metrics/{which}");
        Assert.True(status == 200, $"metrics/{which} answered {status}: {body}");
        return JsonDocument.Parse(body).RootElement;
    }

    /// <summary>Reads a whole file on a worker, bounded: a read that hangs fails the test instead of the run.</summary>
    private static async Task<(Errno Result, byte[] Content)> ReadBoundedAsync(string path)
    {
        var read = Task.Run(() => (MountedFile.TryReadAll(path, out var content), content));
        try
        {
            return await read.WaitAsync(Bound);
        }
        catch (TimeoutException)
        {
            throw new Xunit.Sdk.XunitException($"reading {path} did not return within {Bound}");
        }
    }

    [FuseFact]
    public async Task Cold_walk_in_blob_order_is_read_ahead_fetches_every_byte_once_and_is_served_again_without_the_registry()
    {
        Assert.True(RegistryServer.IsAvailable, $"{RegistryServer.BinaryPath} is missing (build.sh installs docker-registry)");
        var (image, blob) = WriteImage();
        using var registry = RegistryServer.Start();
        Assert.Equal(image.BlobId, registry.Push(Repo, blob));

        await using (var mount = await NydusdMount.StartWithConfigAsync(image.BootstrapPath, Config(registry)))
        {
            using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            foreach (string path in TreeOrder())
            {
                var (result, content) = await ReadBoundedAsync(mount.MountPoint + path);
                Assert.Equal(Errno.Success, result);
                hash.AppendData(content);
            }

            // Every file whole and right: their concatenation is the blob, whose id is its SHA-256.
            Assert.Equal(image.BlobId, Convert.ToHexStringLower(hash.GetHashAndReset()));

            var backend = await MetricsAsync(mount.ApiSocket, "backend");
            var cache = await MetricsAsync(mount.ApiSocket, "blobcache");
            // Nothing fetched twice and nothing beyond the blob: the registry sent each byte exactly once.
            Assert.Equal(blob.Length, backend.GetProperty("read_amount_total").GetInt64());
            Assert.Equal(blob.Length, cache.GetProperty("fetched_bytes").GetInt64());
            Assert.Equal(0, backend.GetProperty("read_errors").GetInt64());
            // Requests of at most batch_size each, most of them read-aheads that the walk then used (it read every
            // byte fetched); the readers themselves fetched only the few before the walk was seen to be in order.
            long requests = backend.GetProperty("read_count").GetInt64();
            long readAheads = cache.GetProperty("readahead_requests").GetInt64();
            Assert.True(requests >= (blob.Length + BatchSize - 1) / BatchSize, $"{requests} requests for {blob.Length} bytes");
            Assert.True(readAheads > requests - readAheads, $"{readAheads} of {requests} requests were read-aheads: {cache}");
            Assert.Equal(0, cache.GetProperty("readahead_failures").GetInt64());
            Assert.InRange(cache.GetProperty("readahead_bytes").GetInt64(), 1, blob.Length);
        }

        // The maps are written at unmount (stored blocks are flushed before they are claimed): a second daemon over
        // the same cache serves the whole tree with the registry gone.
        registry.Stop();
        await using (var second = await NydusdMount.StartWithConfigAsync(image.BootstrapPath, Config(registry)))
        {
            using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            foreach (string path in TreeOrder())
            {
                var (result, content) = await ReadBoundedAsync(second.MountPoint + path);
                Assert.Equal(Errno.Success, result);
                hash.AppendData(content);
            }

            Assert.Equal(image.BlobId, Convert.ToHexStringLower(hash.GetHashAndReset()));
            Assert.Equal(0, (await MetricsAsync(second.ApiSocket, "backend")).GetProperty("read_count").GetInt64());
        }
    }

    [FuseFact]
    public async Task Registry_stopped_mid_walk_fails_uncached_files_with_EIO_and_the_daemon_still_exits_cleanly()
    {
        Assert.True(RegistryServer.IsAvailable, $"{RegistryServer.BinaryPath} is missing (build.sh installs docker-registry)");
        var (image, blob) = WriteImage();
        using var registry = RegistryServer.Start();
        registry.Push(Repo, blob);
        string[] paths = TreeOrder().ToArray();

        var mount = await NydusdMount.StartWithConfigAsync(image.BootstrapPath, Config(registry));
        await using (mount)
        {
            // A quarter of the walk: read-aheads are running or done past it.
            long offset = 0;
            int next = 0;
            for (; next < paths.Length / 4; next++)
            {
                var (result, content) = await ReadBoundedAsync(mount.MountPoint + paths[next]);
                Assert.Equal(Errno.Success, result);
                Assert.True(blob.AsSpan((int)offset, content.Length).SequenceEqual(content), $"{paths[next]} differs");
                offset += content.Length;
            }

            var before = await MetricsAsync(mount.ApiSocket, "blobcache");
            // The walk reached the third batch_size range, which a read-ahead brought (counted before readers wake).
            Assert.True(before.GetProperty("readahead_requests").GetInt64() > 0, $"nothing was read ahead before the registry stopped: {before}");
            registry.Stop();

            // On with the walk: files already fetched (by a read-ahead) read right, the first one that is not fails
            // with EIO (after the backend's timeout and retry, bounded by ReadBoundedAsync) and so do the rest.
            bool failed = false;
            for (; next < paths.Length && !failed; next++)
            {
                long size = new FileInfo(mount.MountPoint + paths[next]).Length;
                var (result, content) = await ReadBoundedAsync(mount.MountPoint + paths[next]);
                if (result == Errno.EIO)
                {
                    failed = true;
                    break;
                }

                Assert.Equal(Errno.Success, result);
                Assert.True(blob.AsSpan((int)offset, content.Length).SequenceEqual(content), $"{paths[next]} differs");
                offset += size;
            }

            Assert.True(failed, "every file was served with the registry stopped: the read-ahead went past its bound");
            Assert.Equal(Errno.EIO, (await ReadBoundedAsync(mount.MountPoint + paths[^1])).Result);
            Assert.True((await MetricsAsync(mount.ApiSocket, "backend")).GetProperty("read_errors").GetInt64() > 0);

            // The daemon stops by itself at SIGTERM (no read-ahead holds it), and the mount is gone.
            mount.Process.Signal(NydusdProcess.SIGTERM);
            Assert.Equal(0, await mount.Process.WaitForExitAsync(Bound));
            Assert.False(mount.IsMounted);
        }
    }

    public void Dispose() => _dir.Dispose();
}
