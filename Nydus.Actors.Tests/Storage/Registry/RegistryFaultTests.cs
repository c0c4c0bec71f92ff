using System.Diagnostics;
using System.Text;
using Nydus.Actors.Storage;
using Nydus.Actors.Storage.Backends;
using Nydus.Actors.Tests.Support;
using Xunit;

namespace Nydus.Actors.Tests.Storage.Registry;

/// <summary>Behaviours a real registry will not show, against <see cref="RegistryFakeServer"/>.</summary>
public sealed class RegistryFaultTests
{
    private const string BlobPath = "/v2/nydus/test-image/blobs/sha256:";
    private static readonly string BlobId = new('c', 64);

    private static byte[] Blob()
    {
        var blob = new byte[256 * 1024];
        new Random(5).NextBytes(blob);
        return blob;
    }

    [Fact]
    public void Truncated_body_is_an_error_and_is_retried_never_short_data()
    {
        byte[] blob = Blob();
        using var server = new RegistryFakeServer(async (request, stream, _) =>
        {
            (long from, long to) = request.Range!.Value;
            int length = (int)(to - from + 1);
            // Promise the full range, send half of it, hang up.
            string head = $"HTTP/1.1 206 Partial Content\r\nConnection: close\r\nContent-Range: bytes {from}-{to}/{blob.Length}\r\n" +
                          $"Content-Length: {length}\r\n\r\n";
            await stream.WriteAsync(Encoding.ASCII.GetBytes(head));
            await stream.WriteAsync(blob.AsMemory((int)from, length / 2));
        });
        var settings = RegistryBackendTests.Settings(server.Host) with { RetryLimit = 2, RetryBackoff = TimeSpan.FromMilliseconds(10) };
        using var backend = new RegistryBackend(settings);
        var destination = new byte[10_000];
        StorageException e = Assert.Throws<StorageException>(() => backend.Read(BlobId, 1000, destination));
        Assert.Equal(StorageErrorKind.BadResponse, e.Kind);
        Assert.Contains(BlobId, e.Message);
        Assert.Equal(3, server.Requests);
        Assert.Equal(1, backend.Metrics.ReadErrors);
    }

    [Fact]
    public void Slow_answers_time_out_but_answers_within_the_timeout_are_read()
    {
        byte[] blob = Blob();
        int delayMs = 3000;
        using var server = new RegistryFakeServer(async (request, stream, cancellation) =>
        {
            await Task.Delay(Volatile.Read(ref delayMs), cancellation);
            await RegistryFakeServer.RespondWithRangeAsync(stream, request, blob);
        });
        var settings = RegistryBackendTests.Settings(server.Host) with { Timeout = TimeSpan.FromSeconds(1) };
        using var backend = new RegistryBackend(settings);
        var destination = new byte[4096];
        var clock = Stopwatch.StartNew();
        StorageException e = Assert.Throws<StorageException>(() => backend.Read(BlobId, 0, destination));
        Assert.Equal(StorageErrorKind.BackendUnavailable, e.Kind);
        Assert.InRange(clock.Elapsed, TimeSpan.FromSeconds(0.9), TimeSpan.FromSeconds(2.5));

        Volatile.Write(ref delayMs, 200);
        backend.Read(BlobId, 4096, destination);
        Assert.True(blob.AsSpan(4096, 4096).SequenceEqual(destination));
    }

    [Fact]
    public void Redirect_target_is_cached_per_blob_gets_no_credentials_and_is_resolved_again_when_it_fails()
    {
        byte[] blob = Blob();
        const string auth = "dGVzdGVyOnNlY3JldA=="; // tester:secret
        int registryRequests = 0, storageRequests = 0, generation = 1;
        bool storageRefuses = false;
        var storageAuthorizations = new List<string?>();
        using var server = new RegistryFakeServer(async (request, stream, _) =>
        {
            if (request.Path.StartsWith(BlobPath, StringComparison.Ordinal))
            {
                Interlocked.Increment(ref registryRequests);
                if (request.Authorization is null)
                {
                    await RegistryFakeServer.RespondAsync(stream, 401, "Unauthorized", null, "WWW-Authenticate: Basic realm=\"r\"");
                    return;
                }

                await RegistryFakeServer.RespondAsync(stream, 307, "Temporary Redirect", null,
                    $"Location: /storage/blob?signature=gen{Volatile.Read(ref generation)}");
                return;
            }

            Interlocked.Increment(ref storageRequests);
            lock (storageAuthorizations)
            {
                storageAuthorizations.Add(request.Authorization);
            }

            if (Volatile.Read(ref storageRefuses) && request.Query.Contains("gen1"))
            {
                await RegistryFakeServer.RespondAsync(stream, 403, "Forbidden", "expired"u8.ToArray());
                return;
            }

            await RegistryFakeServer.RespondWithRangeAsync(stream, request, blob);
        });
        using var backend = new RegistryBackend(RegistryBackendTests.Settings(server.Host, auth));
        var destination = new byte[5000];

        backend.Read(BlobId, 100, destination);
        Assert.True(blob.AsSpan(100, 5000).SequenceEqual(destination));
        Assert.Equal(2, registryRequests); // 401, then with Basic credentials
        Assert.Equal(1, storageRequests);

        for (int i = 1; i <= 3; i++)
        {
            backend.Read(BlobId, i * 10_000L, destination);
            Assert.True(blob.AsSpan(i * 10_000, 5000).SequenceEqual(destination));
        }

        Assert.Equal(2, registryRequests);
        Assert.Equal(4, storageRequests);
        Assert.Equal(blob.Length, backend.GetBlobSize(BlobId)); // learnt from Content-Range

        // The pre-signed URL expires: the backend goes back to the registry, which hands out a new one.
        Volatile.Write(ref generation, 2);
        Volatile.Write(ref storageRefuses, true);
        backend.Read(BlobId, 50_000, destination);
        Assert.True(blob.AsSpan(50_000, 5000).SequenceEqual(destination));
        Assert.Equal(3, registryRequests);
        Assert.Equal(6, storageRequests);
        Assert.All(storageAuthorizations, Assert.Null);
    }

    [Fact]
    public void Server_errors_are_retried_with_backoff_and_then_reported()
    {
        using var server = new RegistryFakeServer((_, stream, _) =>
            RegistryFakeServer.RespondAsync(stream, 503, "Service Unavailable"));
        var settings = RegistryBackendTests.Settings(server.Host) with { RetryLimit = 3, RetryBackoff = TimeSpan.FromMilliseconds(20) };
        using var backend = new RegistryBackend(settings);
        StorageException e = Assert.Throws<StorageException>(() => backend.Read(BlobId, 0, new byte[10]));
        Assert.Equal(StorageErrorKind.BadResponse, e.Kind);
        Assert.Contains("503", e.Message);
        Assert.Equal(4, server.Requests);
    }
}
