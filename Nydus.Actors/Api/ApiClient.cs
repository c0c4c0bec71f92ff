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

    /// <summary>
    /// Polls <c>GET /api/v1/daemon</c> on <paramref name="socket"/> until it reports <paramref name="state"/> (upstream's
    /// name, e.g. RUNNING), as a supervisor does. <paramref name="whyGone"/> is asked every round: a non-null answer
    /// (the process exited, and how) fails the wait at once instead of at the timeout.
    /// </summary>
    /// <exception cref="InvalidOperationException">The process is gone.</exception>
    /// <exception cref="TimeoutException">The state was not reported within <paramref name="timeout"/>.</exception>
    public static async Task WaitForStateAsync(string socket, string state, TimeSpan timeout, Func<string?> whyGone,
        TimeSpan? pollInterval = null)
    {
        var deadline = DateTime.UtcNow + timeout;
        using var client = new ApiClient(socket, TimeSpan.FromSeconds(5));
        string? last = null;
        while (DateTime.UtcNow < deadline)
        {
            if (whyGone() is { } gone)
                throw new InvalidOperationException($"{gone} before reaching {state} (last state {last ?? "none"})");
            if (ApiSocket.IsLive(socket))
            {
                try
                {
                    var (status, body) = await client.SendAsync("GET", "/api/v1/daemon");
                    if (status == 200)
                    {
                        last = System.Text.Json.JsonDocument.Parse(body).RootElement.GetProperty("state").GetString();
                        if (last == state) return;
                    }
                }
                catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
                {
                    // The socket file exists a moment before the server accepts on it; and a daemon still starting on a
                    // loaded machine may take longer than one poll's timeout to answer: the overall deadline decides.
                }
                catch (TaskCanceledException)
                {
                    // One poll slower than the client's 5 s (a loaded host): ask again until the deadline.
                }
            }
            await Task.Delay(pollInterval ?? TimeSpan.FromMilliseconds(20));
        }
        throw new TimeoutException($"the daemon on {socket} did not reach {state} within {timeout} (last state {last ?? "none"})");
    }

    public void Dispose() => _http.Dispose();
}
