using System.Net.Http.Headers;
using System.Text;

namespace Nydus.Actors.Tests.Support;

/// <summary>
/// A small HTTP forward proxy (or, with <see cref="AsMirror"/>, a pull-through mirror) on 127.0.0.1 in the test
/// process, standing in for Dragonfly's peer proxy: it forwards each request to its target (the absolute URL a
/// proxy client sends, or for a mirror the registry given) with HttpClient, answers <c>GET /ping</c> itself, and
/// records every forwarded request with its headers. <see cref="Stop"/> and <see cref="Start"/> take it down (port
/// closed: connection refused) and up again on the same port.
/// </summary>
public sealed class ForwardProxyServer : IDisposable
{
    private static readonly string[] CopiedResponseHeaders =
        ["Content-Range", "Location", "WWW-Authenticate", "Docker-Content-Digest", "Content-Type"];

    private readonly HttpClient _client = new(new SocketsHttpHandler { AllowAutoRedirect = false, UseProxy = false })
    {
        Timeout = TimeSpan.FromSeconds(30),
    };

    private readonly string? _mirrorOf;
    private RegistryFakeServer? _server;

    private ForwardProxyServer(string? mirrorOf)
    {
        _mirrorOf = mirrorOf;
        _server = new RegistryFakeServer(HandleAsync);
        Port = _server.Port;
    }

    public static ForwardProxyServer AsProxy() => new(null);

    /// <summary>A mirror serving what <paramref name="registryBaseUrl"/> (e.g. <c>http://127.0.0.1:5000</c>) has.</summary>
    public static ForwardProxyServer AsMirror(string registryBaseUrl) => new(registryBaseUrl);

    public int Port { get; }

    public string Url => $"http://127.0.0.1:{Port}";

    /// <summary>Every forwarded request: method, the URL forwarded to, and its headers.</summary>
    public List<(string Method, string Url, IReadOnlyDictionary<string, string> Headers)> Forwarded { get; } = new();

    public int ForwardedCount
    {
        get { lock (Forwarded) return Forwarded.Count; }
    }

    public (string Method, string Url, IReadOnlyDictionary<string, string> Headers)[] ForwardedSnapshot()
    {
        lock (Forwarded) return Forwarded.ToArray();
    }

    public void Stop()
    {
        _server?.Dispose();
        _server = null;
    }

    public void Start() => _server ??= new RegistryFakeServer(HandleAsync, Port);

    public void Dispose()
    {
        Stop();
        _client.Dispose();
    }

    private async Task HandleAsync(FakeRequest request, Stream stream, CancellationToken cancellation)
    {
        if (request.Target == "/ping" || request.Target.EndsWith("/ping", StringComparison.Ordinal))
        {
            await RegistryFakeServer.RespondAsync(stream, 200, "OK", "pong"u8.ToArray());
            return;
        }

        string url = _mirrorOf is null ? request.Target : _mirrorOf + request.Target;
        if (!url.StartsWith("http://", StringComparison.Ordinal))
        {
            await RegistryFakeServer.RespondAsync(stream, 400, "Bad Request", Encoding.ASCII.GetBytes($"not a proxy request: {request.Target}"));
            return;
        }

        lock (Forwarded)
        {
            Forwarded.Add((request.Method, url, request.Headers));
        }

        using var forward = new HttpRequestMessage(new HttpMethod(request.Method), url);
        foreach (string name in new[] { "Range", "Authorization" })
        {
            if (request.Headers.TryGetValue(name, out string? value))
            {
                forward.Headers.TryAddWithoutValidation(name, value);
            }
        }

        using HttpResponseMessage response = await _client.SendAsync(forward, cancellation);
        byte[] body = await response.Content.ReadAsByteArrayAsync(cancellation);
        var headers = new List<string>();
        foreach (string name in CopiedResponseHeaders)
        {
            if (response.Headers.TryGetValues(name, out var values) || response.Content.Headers.TryGetValues(name, out values))
            {
                headers.Add($"{name}: {string.Join(", ", values)}");
            }
        }

        if (request.Method == "HEAD")
        {
            // A HEAD answer has no body but tells the body's length.
            string head = $"HTTP/1.1 {(int)response.StatusCode} {response.ReasonPhrase}\r\nConnection: close\r\n" +
                          string.Concat(headers.Select(h => h + "\r\n")) +
                          $"Content-Length: {response.Content.Headers.ContentLength ?? 0}\r\n\r\n";
            await stream.WriteAsync(Encoding.ASCII.GetBytes(head), cancellation);
            return;
        }

        await RegistryFakeServer.RespondAsync(stream, (int)response.StatusCode, response.ReasonPhrase ?? "", body, headers.ToArray());
    }
}
