using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json;

namespace Nydus.Actors.Tests.Support;

/// <summary>
/// A token service for a <see cref="RegistryServer"/> configured with <c>auth: token:</c>: it signs RS256 JWTs
/// with its own RSA key and carries the self-signed certificate in the <c>x5c</c> header, which the registry checks
/// against the <c>rootcertbundle</c> file written by <see cref="WriteRootCertificate"/>. Every request is granted
/// pull and push on the asked repository, if it carries the expected Basic credentials (when any are set).
/// </summary>
public sealed class RegistryTokenIssuer : IDisposable
{
    public const string Service = "nydus-test-registry";
    public const string Issuer = "nydus-test-issuer";

    private readonly RSA _key = RSA.Create(2048);
    private readonly X509Certificate2 _certificate;
    private readonly RegistryFakeServer _server;
    private volatile string? _expectedBasic;
    private int _tokensIssued;
    private int _refused;

    public RegistryTokenIssuer(string? expectedBasic = null, int expiresInSeconds = 300)
    {
        _expectedBasic = expectedBasic;
        ExpiresInSeconds = expiresInSeconds;
        var request = new CertificateRequest("CN=nydus test token issuer", _key, HashAlgorithmName.SHA256,
            RSASignaturePadding.Pkcs1);
        _certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1));
        _server = new RegistryFakeServer(HandleAsync);
    }

    public string Realm => $"http://{_server.Host}/token";

    /// <summary>How long the JWTs themselves are valid (their <c>exp</c>): the registry refuses them after that.</summary>
    public int JwtLifetimeSeconds { get; set; } = 600;

    /// <summary>What the token answers say in <c>expires_in</c>; the JWTs themselves stay valid longer.</summary>
    public int ExpiresInSeconds { get; set; }

    public int TokensIssued => Volatile.Read(ref _tokensIssued);

    public int Refused => Volatile.Read(ref _refused);

    /// <summary>The query strings of token requests, in order.</summary>
    public List<string> Queries { get; } = new();

    /// <summary>The Authorization header of each token request, in order (null: none).</summary>
    public List<string?> Authorizations { get; } = new();

    /// <summary>The Basic credentials (base64) a token request must carry, when any; changeable to rotate them.</summary>
    public string? ExpectedBasic
    {
        get => _expectedBasic;
        set => _expectedBasic = value;
    }

    /// <summary>The <c>sub</c> claim of a token this issuer signed: the user of the Basic credentials it was granted to.</summary>
    public static string SubjectOf(string jwt) =>
        JsonDocument.Parse(Convert.FromBase64String(Pad(jwt.Split('.')[1].Replace('-', '+').Replace('_', '/'))))
            .RootElement.GetProperty("sub").GetString()!;

    private static string Pad(string base64) => base64.PadRight(base64.Length + (4 - base64.Length % 4) % 4, '=');

    public void WriteRootCertificate(string path) => File.WriteAllText(path, _certificate.ExportCertificatePem());

    /// <summary>The <c>auth:</c> YAML block for the registry config, with the bundle written into <paramref name="dir"/>.</summary>
    public string AuthSection(TempDir dir)
    {
        string bundle = dir.Combine("token-root.pem");
        WriteRootCertificate(bundle);
        return $"""
            auth:
              token:
                realm: {Realm}
                service: {Service}
                issuer: {Issuer}
                rootcertbundle: {bundle}
            """;
    }

    /// <summary>A signed registry token granting <paramref name="actions"/> on <paramref name="repo"/>.</summary>
    public string IssueJwt(string repo, params string[] actions) => IssueJwt(repo, "tester", actions);

    private string IssueJwt(string repo, string subject, string[] actions)
    {
        long now = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        string header = Base64Url(JsonSerializer.SerializeToUtf8Bytes(new Dictionary<string, object>
        {
            ["typ"] = "JWT",
            ["alg"] = "RS256",
            ["x5c"] = new[] { Convert.ToBase64String(_certificate.RawData) },
        }));
        string claims = Base64Url(JsonSerializer.SerializeToUtf8Bytes(new Dictionary<string, object>
        {
            ["iss"] = Issuer,
            ["sub"] = subject,
            ["aud"] = Service,
            ["exp"] = now + JwtLifetimeSeconds,
            ["nbf"] = now - 10,
            ["iat"] = now,
            ["jti"] = Guid.NewGuid().ToString("N"),
            ["access"] = new[] { new Dictionary<string, object> { ["type"] = "repository", ["name"] = repo, ["actions"] = actions } },
        }));
        string signingInput = header + "." + claims;
        byte[] signature = _key.SignData(Encoding.ASCII.GetBytes(signingInput), HashAlgorithmName.SHA256,
            RSASignaturePadding.Pkcs1);
        return signingInput + "." + Base64Url(signature);
    }

    public void Dispose()
    {
        _server.Dispose();
        _certificate.Dispose();
        _key.Dispose();
    }

    private async Task HandleAsync(FakeRequest request, Stream stream, CancellationToken cancellation)
    {
        lock (Queries)
        {
            Queries.Add(request.Query);
            Authorizations.Add(request.Authorization);
        }

        string? expected = _expectedBasic;
        if (expected is not null && request.Authorization != "Basic " + expected)
        {
            Interlocked.Increment(ref _refused);
            await RegistryFakeServer.RespondAsync(stream, 401, "Unauthorized", null,
                "WWW-Authenticate: Basic realm=\"token\"");
            return;
        }

        string scope = "";
        foreach (string pair in request.Query.Split('&'))
        {
            if (pair.StartsWith("scope=", StringComparison.Ordinal))
            {
                scope = Uri.UnescapeDataString(pair["scope=".Length..]);
            }
        }

        // scope = repository:<name>:<actions>
        string[] parts = scope.Split(':');
        string repo = parts.Length >= 2 ? parts[1] : "";
        // The subject is the user the token was granted to, so a test can tell which credentials a request stands for.
        string subject = "tester";
        if (request.Authorization is { } basic && basic.StartsWith("Basic ", StringComparison.Ordinal))
        {
            subject = Encoding.UTF8.GetString(Convert.FromBase64String(basic["Basic ".Length..])).Split(':')[0];
        }

        string token = IssueJwt(repo, subject, ["pull", "push"]);
        Interlocked.Increment(ref _tokensIssued);
        byte[] body = JsonSerializer.SerializeToUtf8Bytes(new Dictionary<string, object>
        {
            ["token"] = token,
            ["expires_in"] = ExpiresInSeconds,
            ["issued_at"] = DateTimeOffset.UtcNow.ToString("O"),
        });
        await RegistryFakeServer.RespondAsync(stream, 200, "OK", body, "Content-Type: application/json");
    }

    private static string Base64Url(byte[] bytes) =>
        Convert.ToBase64String(bytes).TrimEnd('=').Replace('+', '-').Replace('/', '_');
}
