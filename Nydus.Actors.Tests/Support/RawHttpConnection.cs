using System.Net.Sockets;
using System.Text;

namespace Nydus.Actors.Tests.Support;

/// <summary>
/// One HTTP/1.1 connection to a Unix socket, held by the test itself (HttpClient pools and recycles its own, so it
/// cannot say whether the server closed one): send a request, read the answer, sit idle, and ask whether the server
/// hung up, as nydus-snapshotter's liveness monitor would notice.
/// </summary>
public sealed class RawHttpConnection : IDisposable
{
    private readonly Socket _socket;

    private RawHttpConnection(Socket socket) => _socket = socket;

    public static async Task<RawHttpConnection> ConnectAsync(string socketPath, TimeSpan timeout)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), cts.Token);
            return new RawHttpConnection(socket);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>Sends one GET on this connection and returns the status code (the body is read and dropped).</summary>
    public async Task<int> GetAsync(string path, TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        await _socket.SendAsync(Encoding.ASCII.GetBytes($"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n"), SocketFlags.None, cts.Token);
        var received = new List<byte>();
        var buffer = new byte[8192];
        int headerEnd;
        while ((headerEnd = IndexOf(received, "\r\n\r\n"u8)) < 0)
        {
            int n = await _socket.ReceiveAsync(buffer, SocketFlags.None, cts.Token);
            if (n == 0) throw new IOException("the server closed the connection before answering");
            received.AddRange(buffer.AsSpan(0, n).ToArray());
        }
        var head = Encoding.ASCII.GetString(received.GetRange(0, headerEnd).ToArray());
        var lines = head.Split("\r\n");
        int status = int.Parse(lines[0].Split(' ')[1]);
        int length = lines.Skip(1).Select(l => l.Split(':', 2))
            .Where(kv => kv.Length == 2 && kv[0].Trim().Equals("Content-Length", StringComparison.OrdinalIgnoreCase))
            .Select(kv => int.Parse(kv[1].Trim())).FirstOrDefault();
        int have = received.Count - headerEnd - 4;
        while (have < length)
        {
            int n = await _socket.ReceiveAsync(buffer, SocketFlags.None, cts.Token);
            if (n == 0) throw new IOException("the server closed the connection in the middle of an answer");
            have += n;
        }
        return status;
    }

    /// <summary>True when the server has closed the connection (end of stream readable, nothing pending).</summary>
    public bool IsClosedByServer()
    {
        if (!_socket.Poll(0, SelectMode.SelectRead)) return false;
        if (_socket.Available > 0) return false;
        return true;
    }

    /// <summary>Waits up to <paramref name="timeout"/> for the server to close the connection.</summary>
    public async Task<bool> WaitForCloseAsync(TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline)
        {
            if (IsClosedByServer()) return true;
            await Task.Delay(50);
        }
        return IsClosedByServer();
    }

    private static int IndexOf(List<byte> data, ReadOnlySpan<byte> pattern)
    {
        for (int i = 0; i + pattern.Length <= data.Count; i++)
        {
            bool match = true;
            for (int j = 0; j < pattern.Length && match; j++) match = data[i + j] == pattern[j];
            if (match) return i;
        }
        return -1;
    }

    public void Dispose() => _socket.Dispose();
}
