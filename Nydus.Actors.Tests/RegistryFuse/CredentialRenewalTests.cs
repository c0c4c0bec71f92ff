using System.Net.Http.Headers;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Nydus.Actors.Api;
using Nydus.Actors.Interop;
using Nydus.Actors.Tests.Support;
using Xunit;

namespace Nydus.Actors.Tests.RegistryFuse;

/// <summary>
/// nydus-snapshotter's credential renewal against the real nydusd: a token-auth docker-registry whose token
/// service switches from the old credentials to new ones, <c>PUT /api/v1/config?id=/</c> with the new
/// <c>registry_auth</c> while a reader keeps reading through FUSE (no blob cache, page cache dropped before every
/// read, so each read is a registry request). Every registry request passes a recording forward proxy (the
/// backend's <c>proxy</c> with fallback off), and the token service records the credentials of each token request.
/// </summary>
public sealed partial class CredentialRenewalTests : IDisposable
{
    private const string Repo = "library/renewal";
    private static readonly string OldAuth = Convert.ToBase64String("olduser:old-secret-4711"u8);
    private static readonly string NewAuth = Convert.ToBase64String("newuser:new-secret-0815"u8);
    private readonly TempDir _dir = new("credential-renewal");

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "posix_fadvise")]
    private static partial int Fadvise(int fd, long offset, long length, int advice);

    [LibraryImport("libc", EntryPoint = "close")]
    private static partial int Close(int fd);

    /// <summary>Drops the file's cached pages (POSIX_FADV_DONTNEED) so the next read goes to the daemon.</summary>
    private static void DropPages(string path)
    {
        int fd = Open(path, Libc.O_RDONLY | Libc.O_CLOEXEC);
        if (fd < 0) return;
        Fadvise(fd, 0, 0, 4);
        Close(fd);
    }

    private static Dictionary<string, string> ExpectedMd5s()
    {
        var result = File.ReadAllText(ImageFixtures.UpstreamFile("repeatable", "sha256-nocompress-repeatable.result"));
        return Regex.Matches(result, @"^([0-9a-f]{32})  (/\S+)$", RegexOptions.Multiline)
            .ToDictionary(m => m.Groups[2].Value, m => m.Groups[1].Value);
    }

    private static string? ReadAndCheck(string mountPoint, string path, string md5)
    {
        DropPages(mountPoint + path);
        Errno errno = MountedFile.TryReadAll(mountPoint + path, out var content);
        if (errno != Errno.Success) return $"{path}: {errno}";
        string actual = Convert.ToHexStringLower(MD5.HashData(content));
        return actual == md5 ? null : $"{path}: md5 {actual}, expected {md5}";
    }

    /// <summary>The user a registry request's bearer token was granted to (null: no bearer token).</summary>
    private static string? UserOf(IReadOnlyDictionary<string, string> headers) =>
        headers.TryGetValue("Authorization", out string? value) && value.StartsWith("Bearer ", StringComparison.Ordinal)
            ? RegistryTokenIssuer.SubjectOf(value["Bearer ".Length..])
            : null;

    [FuseFact]
    public async Task Renewed_credentials_apply_to_the_next_request_without_a_failed_read_or_a_log_line()
    {
        Assert.True(RegistryServer.IsAvailable, $"{RegistryServer.BinaryPath} is missing (build.sh installs docker-registry)");
        using var issuer = new RegistryTokenIssuer(expectedBasic: OldAuth, expiresInSeconds: 300);
        using var registry = RegistryServer.Start(issuer.AuthSection);
        var blob = ImageFixtures.UpstreamFile("repeatable", "blobs", "7334a2594e133cf8ae364189c2276b090fc490c627bcc3fb1077f0419a538e00");
        registry.Push(Repo, File.ReadAllBytes(blob), new AuthenticationHeaderValue("Bearer", issuer.IssueJwt(Repo, "pull", "push")));
        using var proxy = ForwardProxyServer.AsProxy();
        var bootstrap = ImageFixtures.UpstreamFile("repeatable", "sha256-nocompress-repeatable");
        var expected = ExpectedMd5s();
        string config = $$"""
            {
              "version": 2,
              "backend": { "type": "registry", "registry": { "scheme": "http", "host": "{{registry.Host}}", "repo": "{{Repo}}",
                           "auth": "{{OldAuth}}", "timeout": 5, "connect_timeout": 5, "retry_limit": 0,
                           "proxy": { "url": "{{proxy.Url}}", "fallback": false } } },
              "cache": { "type": "" },
              "rafs": { "mode": "direct" }
            }
            """;

        await using var mount = await NydusdMount.StartWithConfigAsync(bootstrap, config);
        var failures = new List<string>();
        int reads = 0;
        using var stop = new CancellationTokenSource();
        var reader = Task.Run(() =>
        {
            while (!stop.IsCancellationRequested)
            {
                foreach (var (path, md5) in expected)
                {
                    if (ReadAndCheck(mount.MountPoint, path, md5) is { } failure)
                        lock (failures) failures.Add(failure);
                    Interlocked.Increment(ref reads);
                }
            }
        });
        try
        {
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
            while (proxy.ForwardedSnapshot().Count(r => UserOf(r.Headers) == "olduser") < 20)
            {
                Assert.True(DateTime.UtcNow < deadline, "the reader made no registry requests with the old credentials");
                await Task.Delay(50);
            }

            // The registry's token service now refuses the old credentials, and the snapshotter sends the new ones.
            issuer.ExpectedBasic = NewAuth;
            int readsAtRenewal = Volatile.Read(ref reads);
            int tokenRequestsBefore;
            lock (issuer.Queries) tokenRequestsBefore = issuer.Authorizations.Count;
            using (var client = new ApiClient(mount.ApiSocket))
            {
                var (status, body) = await client.SendAsync("PUT", "/api/v1/config?id=/", JsonSerializer.Serialize(new Dictionary<string, string> { ["registry_auth"] = NewAuth }));
                Assert.True(status == 204, $"PUT /api/v1/config answered {status}: {body}");
                var (getStatus, getBody) = await client.SendAsync("GET", "/api/v1/config?id=/");
                Assert.Equal(200, getStatus);
                Assert.Equal("<redacted>", JsonDocument.Parse(getBody).RootElement.GetProperty("registry_auth").GetString());
            }

            // The first read after the renewal goes out with a token granted to the new credentials.
            int mark = proxy.ForwardedCount;
            var (firstPath, firstMd5) = expected.First();
            Assert.Null(ReadAndCheck(mount.MountPoint, firstPath, firstMd5));
            var afterFirst = proxy.ForwardedSnapshot()[mark..];
            Assert.NotEmpty(afterFirst);
            Assert.Equal("newuser", UserOf(afterFirst[^1].Headers));

            int newMark = proxy.ForwardedCount;
            deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
            // A whole pass over the image after the renewal (every file, each read a registry request).
            while (proxy.ForwardedCount < newMark + 40 || Volatile.Read(ref reads) < readsAtRenewal + 2 * expected.Count)
            {
                Assert.True(DateTime.UtcNow < deadline, "the reader stopped making registry requests after the renewal");
                await Task.Delay(50);
            }

            stop.Cancel();
            await reader.WaitAsync(TimeSpan.FromSeconds(60));

            lock (failures) Assert.True(failures.Count == 0, $"failed reads: {string.Join("; ", failures.Take(5))}");
            Assert.True(readsAtRenewal > 0, "the reader had not finished a read when the credentials were renewed");
            // Old credentials never used after the renewal: every later token request carried the new ones,
            // and every registry request after the first renewed one carried a token granted to them.
            string?[] tokenAuths;
            lock (issuer.Queries) tokenAuths = issuer.Authorizations.Skip(tokenRequestsBefore).ToArray();
            Assert.NotEmpty(tokenAuths);
            Assert.All(tokenAuths, a => Assert.Equal("Basic " + NewAuth, a));
            Assert.All(proxy.ForwardedSnapshot()[newMark..], r => Assert.Equal("newuser", UserOf(r.Headers)));
            Assert.True(mount.IsMounted);
        }
        finally
        {
            stop.Cancel();
            await reader.WaitAsync(TimeSpan.FromSeconds(60)).ContinueWith(_ => { });
        }

        // Nothing about the credentials in the daemon's log (console output): neither value nor password.
        string output = mount.Process.Output;
        foreach (string secret in new[] { OldAuth, NewAuth, "old-secret-4711", "new-secret-0815" })
            Assert.DoesNotContain(secret, output);
    }

    [FuseFact]
    public async Task Bad_config_requests_are_refused_and_change_nothing()
    {
        var bootstrap = ImageFixtures.UpstreamFile("repeatable", "sha256-nocompress-repeatable");
        string blobDir = Path.GetDirectoryName(ImageFixtures.UpstreamFile("repeatable", "blobs", "7334a2594e133cf8ae364189c2276b090fc490c627bcc3fb1077f0419a538e00"))!;
        await using var mount = await NydusdMount.StartWithLocalFsDirAsync(bootstrap, blobDir);
        using var client = new ApiClient(mount.ApiSocket);
        (string Body, int Status, string Named)[] cases =
        [
            ("""{"registry_auth": "not base64!"}""", 400, "registry_auth"),
            ("""{"registry_auth": 42}""", 400, "registry_auth"),
            ("""{"no_such_key": "x"}""", 400, "no_such_key"),
            ("""{"proxy_url": "http://127.0.0.1:1"}""", 501, "proxy_url"),
            ("""["registry_auth"]""", 400, "JSON object"),
            ("""{""", 400, "not valid JSON"),
        ];
        foreach (var (body, status, named) in cases)
        {
            var (got, answer) = await client.SendAsync("PUT", "/api/v1/config?id=/", body);
            Assert.True(got == status, $"{body}: {got} {answer}");
            Assert.Contains(named, answer);
        }

        // A good and a bad key together: refused as a whole, nothing stored.
        var (mixed, _) = await client.SendAsync("PUT", "/api/v1/config?id=/",
            JsonSerializer.Serialize(new Dictionary<string, string> { ["registry_auth"] = NewAuth, ["nope"] = "x" }));
        Assert.Equal(400, mixed);
        var (status2, all) = await client.SendAsync("GET", "/api/v1/config");
        Assert.Equal(200, status2);
        Assert.Equal("{}", all.Trim());
        Assert.Contains("\"state\":\"RUNNING\"", (await client.SendAsync("GET", "/api/v1/daemon")).Body.Replace(" ", ""));

        // A registry mount whose ca_cert_files names a missing file: refused naming the field and the file; the
        // instance already mounted keeps serving.
        string missingCa = _dir.Combine("no-such-ca.pem");
        string registryConfig = $$$"""
            {"version": 2, "backend": {"type": "registry", "registry": {"scheme": "https", "host": "127.0.0.1:1", "repo": "r",
             "ca_cert_files": [{{{NydusdMount.Json(missingCa)}}}]}}, "cache": {"type": ""}, "rafs": {"mode": "direct"}}
            """;
        var (mountStatus, mountAnswer) = await client.SendAsync("POST", "/api/v1/mount?mountpoint=/reg",
            JsonSerializer.Serialize(new { source = bootstrap, fs_type = "rafs", config = registryConfig }));
        Assert.True(mountStatus == 400, $"mount with a missing CA file answered {mountStatus}: {mountAnswer}");
        Assert.Contains("backend.registry.ca_cert_files", mountAnswer);
        Assert.Contains(missingCa, mountAnswer);
        var (path, md5) = ExpectedMd5s().First();
        Assert.Null(ReadAndCheck(mount.MountPoint, path, md5));
    }

    public void Dispose() => _dir.Dispose();
}
