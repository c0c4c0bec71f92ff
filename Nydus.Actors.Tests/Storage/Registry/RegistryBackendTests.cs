using System.Diagnostics;
using System.Net.Http.Headers;
using Nydus.Actors.Storage;
using Nydus.Actors.Storage.Backends;
using Nydus.Actors.Tests.Support;
using Xunit;

namespace Nydus.Actors.Tests.Storage.Registry;

/// <summary>The registry backend against Debian's docker-registry (plain, htpasswd, token auth).</summary>
public sealed class RegistryBackendTests
{
    private const string Repo = "nydus/test-image";
    private const string User = "tester";
    private const string Password = "nydus-secret-pw";

    // bcrypt (cost 4) of Password, made once with python3 crypt.crypt: no bcrypt tool is needed at test time.
    private const string PasswordHash = "$2b$04$jaQ5bk5eMhcJQP6p5COqYOJiSu/cEi8PRxBruNHHqYl0ic6hiEqNC";

    private static readonly string BasicAuth = Convert.ToBase64String("tester:nydus-secret-pw"u8);

    private static readonly string[] FixtureBlobs =
    [
        ImageFixtures.UpstreamFile("repeatable", "blobs", "7334a2594e133cf8ae364189c2276b090fc490c627bcc3fb1077f0419a538e00"),
        ImageFixtures.UpstreamFile("repeatable", "blobs", "d7b86b1e74e316fe945741d1a9fa1b271459fe41481e304977659e0c6ecf56ac"),
        // Its file name is not its SHA-256 (nydus 2.2 blob ids differ from the digest), so it is pushed under its digest.
        ImageFixtures.UpstreamFile("blobs", "be7d77eeb719f70884758d1aa800ed0fb09d701aaec469964e9d54325f0d5fef"),
    ];

    internal static RegistryBackendSettings Settings(string host, string? auth = null) => new()
    {
        Scheme = "http",
        Host = host,
        Repo = Repo,
        Auth = auth,
        Timeout = TimeSpan.FromSeconds(5),
        ConnectTimeout = TimeSpan.FromSeconds(2),
    };

    [Fact]
    public void Ranges_read_through_the_registry_equal_the_fixture_blobs()
    {
        using RegistryServer registry = RegistryServer.Start();
        using var backend = new RegistryBackend(Settings(registry.Host));
        var random = new Random(11);
        long bytes = 0;
        int reads = 0;
        foreach (string path in FixtureBlobs)
        {
            byte[] content = File.ReadAllBytes(path);
            string id = registry.Push(Repo, content);
            Assert.Equal(content.Length, backend.GetBlobSize(id));

            var whole = new byte[content.Length];
            backend.Read(id, 0, whole);
            Assert.True(content.AsSpan().SequenceEqual(whole), $"whole blob {id}");
            bytes += whole.Length;
            reads++;

            for (int i = 0; i < 20; i++)
            {
                int length = random.Next(1, Math.Min(content.Length, 300_000));
                long offset = random.NextInt64(0, content.Length - length + 1);
                var part = new byte[length];
                backend.Read(id, offset, part);
                Assert.True(content.AsSpan((int)offset, length).SequenceEqual(part), $"blob {id} [{offset}, +{length})");
                bytes += length;
                reads++;
            }

            var tail = new byte[1];
            backend.Read(id, content.Length - 1, tail);
            Assert.Equal(content[^1], tail[0]);
            bytes += 1;
            reads++;

            StorageException beyond = Assert.Throws<StorageException>(() => backend.Read(id, content.Length - 10, new byte[20]));
            Assert.Equal(StorageErrorKind.BlobTooShort, beyond.Kind);
            reads++;
        }

        Assert.Equal(reads, backend.Metrics.ReadCount);
        Assert.Equal(bytes, backend.Metrics.ReadBytes);
        Assert.Equal(FixtureBlobs.Length, backend.Metrics.ReadErrors);
        Assert.Equal(reads, backend.Metrics.CountBySize().Sum());
        Assert.True(backend.Metrics.CumulativeLatencyMicros > 0);
    }

    [Fact]
    public void Missing_blob_is_BlobNotFound_naming_the_blob_and_is_not_retried()
    {
        using RegistryServer registry = RegistryServer.Start();
        using var backend = new RegistryBackend(Settings(registry.Host) with { RetryLimit = 3 });
        string missing = new('a', 64);
        StorageException e = Assert.Throws<StorageException>(() => backend.Read(missing, 0, new byte[10]));
        Assert.Equal(StorageErrorKind.BlobNotFound, e.Kind);
        Assert.Contains(missing, e.Message);
        Assert.Equal(1, backend.RegistryRequests);

        StorageException size = Assert.Throws<StorageException>(() => backend.GetBlobSize(missing));
        Assert.Equal(StorageErrorKind.BlobNotFound, size.Kind);

        StorageException invalid = Assert.Throws<StorageException>(() => backend.Read("../../v2/x", 0, new byte[1]));
        Assert.Equal(StorageErrorKind.BlobNotFound, invalid.Kind);
    }

    [Fact]
    public void Basic_auth_from_htpasswd_is_used_and_wrong_credentials_are_AccessDenied_without_leaking_them()
    {
        using RegistryServer registry = RegistryServer.Start(dir =>
        {
            string htpasswd = dir.Combine("htpasswd");
            File.WriteAllText(htpasswd, $"{User}:{PasswordHash}\n");
            return $"""
                auth:
                  htpasswd:
                    realm: nydus-test
                    path: {htpasswd}
                """;
        });
        byte[] content = File.ReadAllBytes(FixtureBlobs[1]);
        string id = registry.Push(Repo, content, new AuthenticationHeaderValue("Basic", BasicAuth));

        using (var backend = new RegistryBackend(Settings(registry.Host, BasicAuth)))
        {
            var part = new byte[4096];
            backend.Read(id, 1000, part);
            Assert.True(content.AsSpan(1000, 4096).SequenceEqual(part));
            Assert.Equal(content.Length, backend.GetBlobSize(id));
            // After the first challenge the credentials go along at once: one request per read.
            long before = backend.RegistryRequests;
            backend.Read(id, 0, part);
            Assert.Equal(before + 1, backend.RegistryRequests);
        }

        string wrong = Convert.ToBase64String("tester:not-the-password"u8);
        var settings = Settings(registry.Host, wrong) with { RetryLimit = 2 };
        using (var backend = new RegistryBackend(settings))
        {
            StorageException e = Assert.Throws<StorageException>(() => backend.Read(id, 0, new byte[16]));
            Assert.Equal(StorageErrorKind.AccessDenied, e.Kind);
            Assert.Contains(id, e.Message);
            Assert.DoesNotContain(wrong, e.Message);
            Assert.DoesNotContain("not-the-password", e.Message);
            Assert.DoesNotContain(wrong, settings.ToString());
            Assert.Equal(2, backend.RegistryRequests);
        }

        using (var anonymous = new RegistryBackend(Settings(registry.Host)))
        {
            StorageException e = Assert.Throws<StorageException>(() => anonymous.Read(id, 0, new byte[16]));
            Assert.Equal(StorageErrorKind.AccessDenied, e.Kind);
        }
    }

    [Fact]
    public void Bearer_token_flow_fetches_a_token_with_basic_auth_caches_it_and_renews_it_after_expiry()
    {
        using var issuer = new RegistryTokenIssuer(expectedBasic: BasicAuth, expiresInSeconds: 2);
        using RegistryServer registry = RegistryServer.Start(issuer.AuthSection);
        byte[] content = File.ReadAllBytes(FixtureBlobs[0]);
        string id = registry.Push(Repo, content,
            new AuthenticationHeaderValue("Bearer", issuer.IssueJwt(Repo, "pull", "push")));

        using var backend = new RegistryBackend(Settings(registry.Host, BasicAuth));
        var part = new byte[100_000];
        var started = Stopwatch.StartNew();
        for (int i = 0; i < 5; i++)
        {
            backend.Read(id, i * 100_000L, part);
            Assert.True(content.AsSpan(i * 100_000, 100_000).SequenceEqual(part));
        }

        Assert.True(started.Elapsed < TimeSpan.FromSeconds(1.5), "reads were too slow to observe the token cache");
        Assert.Equal(1, issuer.TokensIssued);
        Assert.Equal(1, backend.TokenFetches);
        Assert.Contains($"scope={Uri.EscapeDataString($"repository:{Repo}:pull")}", issuer.Queries[0]);
        Assert.Contains($"service={RegistryTokenIssuer.Service}", issuer.Queries[0]);

        // expires_in = 2 s, and the token was issued within the first 1.5 s (asserted above): by 3.5 s it has expired
        // whatever the load, so the next read asks for a new token before going to the registry. (Waiting 2.2 s from
        // the start failed once under load: a token issued late in that window was still valid.)
        while (started.Elapsed < TimeSpan.FromSeconds(3.5))
        {
            Thread.Sleep(100);
        }

        backend.Read(id, 0, part);
        Assert.True(content.AsSpan(0, 100_000).SequenceEqual(part));
        Assert.Equal(2, issuer.TokensIssued);
        Assert.Equal(0, issuer.Refused);
    }

    [Fact]
    public void Configured_registry_token_is_sent_as_bearer_without_token_service()
    {
        using var issuer = new RegistryTokenIssuer();
        using RegistryServer registry = RegistryServer.Start(issuer.AuthSection);
        byte[] content = File.ReadAllBytes(FixtureBlobs[2]);
        string token = issuer.IssueJwt(Repo, "pull", "push");
        string id = registry.Push(Repo, content, new AuthenticationHeaderValue("Bearer", token));

        var settings = Settings(registry.Host) with { RegistryToken = token };
        Assert.DoesNotContain(token, settings.ToString());
        using var backend = new RegistryBackend(settings);
        var all = new byte[content.Length];
        backend.Read(id, 0, all);
        Assert.True(content.AsSpan().SequenceEqual(all));
        Assert.Equal(0, issuer.TokensIssued);
        Assert.Equal(1, backend.RegistryRequests);
    }

    [Fact]
    public void Stopped_registry_fails_reads_within_the_timeout_and_they_succeed_once_it_is_back()
    {
        using RegistryServer registry = RegistryServer.Start();
        byte[] content = File.ReadAllBytes(FixtureBlobs[1]);
        string id = registry.Push(Repo, content);
        var settings = Settings(registry.Host) with { Timeout = TimeSpan.FromSeconds(2), RetryLimit = 1 };
        using var backend = new RegistryBackend(settings);
        var part = new byte[8192];
        backend.Read(id, 500, part);

        registry.Stop();
        var clock = Stopwatch.StartNew();
        StorageException e = Assert.Throws<StorageException>(() => backend.Read(id, 500, part));
        Assert.Equal(StorageErrorKind.BackendUnavailable, e.Kind);
        Assert.Contains(id, e.Message);
        // Two attempts of at most 2 s each plus the backoff.
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), $"failure took {clock.Elapsed}");

        registry.Start();
        Array.Clear(part);
        backend.Read(id, 500, part);
        Assert.True(content.AsSpan(500, 8192).SequenceEqual(part));
    }
}
