using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Nydus.Actors.Tests.Support;

/// <summary>
/// A tiny hand-written HTTP/1.1 server on 127.0.0.1 for behaviours a real registry will not show: truncated
/// bodies, slow answers, redirects to blob storage, token services. Each connection serves one request and is
/// closed (<c>Connection: close</c>). The handler writes the raw response itself.
/// </summary>
public sealed class RegistryFakeServer : IDisposable
{
    private readonly TcpListener _listener;
    private readonly Func<FakeRequest, Stream, CancellationToken, Task> _handler;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _acceptLoop;
    private int _requests;

    /// <param name="port">0 for a free port; a given one to come back on the port of a server stopped before.</param>
    public RegistryFakeServer(Func<FakeRequest, Stream, CancellationToken, Task> handler, int port = 0)
    {
        _handler = handler;
        _listener = new TcpListener(IPAddress.Loopback, port);
        // Connections this server closed linger in TIME_WAIT on its port; a successor must still bind it.
        _listener.Server.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
        _listener.Start();
        _acceptLoop = Task.Run(AcceptLoopAsync);
    }

    public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

    public string Host => $"127.0.0.1:{Port}";

    public int Requests => Volatile.Read(ref _requests);

    /// <summary>Writes a complete response with the given status, headers and body.</summary>
    public static async Task RespondAsync(Stream stream, int status, string reason, byte[]? body = null,
        params string[] headers)
    {
        var head = new StringBuilder($"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n");
        foreach (string header in headers)
        {
            head.Append(header).Append("\r\n");
        }

        head.Append($"Content-Length: {body?.Length ?? 0}\r\n\r\n");
        await stream.WriteAsync(Encoding.ASCII.GetBytes(head.ToString()));
        if (body is not null)
        {
            await stream.WriteAsync(body);
        }
    }

    /// <summary>Serves <paramref name="blob"/> like a registry: Range requests get 206 with Content-Range.</summary>
    public static Task RespondWithRangeAsync(Stream stream, FakeRequest request, byte[] blob)
    {
        (long from, long to) = request.Range ?? (0, blob.Length - 1);
        if (request.Range is null)
        {
            return RespondAsync(stream, 200, "OK", request.Method == "HEAD" ? null : blob);
        }

        byte[] part = blob.AsSpan((int)from, (int)(to - from + 1)).ToArray();
        return RespondAsync(stream, 206, "Partial Content", part, $"Content-Range: bytes {from}-{to}/{blob.Length}");
    }

    public void Dispose()
    {
        _stop.Cancel();
        _listener.Stop();
        try
        {
            _acceptLoop.Wait(TimeSpan.FromSeconds(5));
        }
        catch (AggregateException)
        {
        }

        _stop.Dispose();
    }

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            TcpClient client;
            try
            {
                client = await _listener.AcceptTcpClientAsync(_stop.Token);
            }
            catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
            {
                return;
            }

            _ = Task.Run(() => ServeAsync(client));
        }
    }

    private async Task ServeAsync(TcpClient client)
    {
        using (client)
        {
            try
            {
                NetworkStream stream = client.GetStream();
                FakeRequest? request = await ReadRequestAsync(stream);
                if (request is null)
                {
                    return;
                }

                Interlocked.Increment(ref _requests);
                await _handler(request, stream, _stop.Token);
                await stream.FlushAsync();
            }
            catch (Exception e) when (e is IOException or SocketException or OperationCanceledException
                                          or ObjectDisposedException)
            {
            }
        }
    }

    private static async Task<FakeRequest?> ReadRequestAsync(NetworkStream stream)
    {
        var buffer = new byte[16 * 1024];
        int length = 0;
        while (true)
        {
            int n = await stream.ReadAsync(buffer.AsMemory(length));
            if (n == 0)
            {
                return null;
            }

            length += n;
            string text = Encoding.ASCII.GetString(buffer, 0, length);
            int end = text.IndexOf("\r\n\r\n", StringComparison.Ordinal);
            if (end < 0)
            {
                continue;
            }

            string[] lines = text[..end].Split("\r\n");
            string[] requestLine = lines[0].Split(' ');
            var headers = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
            foreach (string line in lines.AsSpan(1))
            {
                int colon = line.IndexOf(':');
                if (colon > 0)
                {
                    headers[line[..colon].Trim()] = line[(colon + 1)..].Trim();
                }
            }

            return new FakeRequest(requestLine[0], requestLine[1], headers);
        }
    }
}

/// <summary>What <see cref="RegistryFakeServer"/> parsed of one request.</summary>
public sealed record FakeRequest(string Method, string Target, IReadOnlyDictionary<string, string> Headers)
{
    public string Path => Target.Split('?')[0];

    public string Query => Target.Contains('?') ? Target[(Target.IndexOf('?') + 1)..] : "";

    public string? Authorization => Headers.TryGetValue("Authorization", out string? value) ? value : null;

    /// <summary>The <c>Range: bytes=a-b</c> header, if any.</summary>
    public (long From, long To)? Range
    {
        get
        {
            if (!Headers.TryGetValue("Range", out string? value) || !value.StartsWith("bytes=", StringComparison.Ordinal))
            {
                return null;
            }

            string[] parts = value["bytes=".Length..].Split('-');
            return (long.Parse(parts[0]), long.Parse(parts[1]));
        }
    }
}
