using System.Net.Http.Json;
using System.Net.Sockets;
using System.Text;

namespace Nydus.Actors.Api;

/// <summary>A small HTTP client for a daemon's Unix socket API: what <c>nydusd ctl</c> and the tests use.</summary>
public sealed class ApiClient : IDisposable
{
    private readonly HttpClient _http;

    public ApiClient(string socketPath, TimeSpan? timeout = null)
    {
        var handler = new SocketsHttpHandler
        {
            ConnectCallback = async (_, cancellationToken) =>
            {
                var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                try
                {
                    await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), cancellationToken);
                    return new NetworkStream(socket, ownsSocket: true);
                }
                catch
                {
                    socket.Dispose();
                    throw;
                }
            },
        };
        _http = new HttpClient(handler)
        {
            BaseAddress = new Uri("http://localhost"),
            Timeout = timeout ?? TimeSpan.FromSeconds(30),
        };
    }

    /// <summary>Sends a request and returns the status and the body text (empty for 204).</summary>
    public async Task<(int Status, string Body)> SendAsync(string method, string pathAndQuery, string? jsonBody = null,
        CancellationToken cancellationToken = default)
    {
        using var request = new HttpRequestMessage(new HttpMethod(method), pathAndQuery);
        if (jsonBody is not null) request.Content = new StringContent(jsonBody, Encoding.UTF8, "application/json");
        using var response = await _http.SendAsync(request, cancellationToken);
        return ((int)response.StatusCode, await response.Content.ReadAsStringAsync(cancellationToken));
    }

    public async Task<T?> GetJsonAsync<T>(string path, CancellationToken cancellationToken = default) =>
        await _http.GetFromJsonAsync<T>(path, cancellationToken);

    public void Dispose() => _http.Dispose();
}
