using System.Net.Sockets;

namespace Nydus.Actors.Api;

/// <summary>
/// The API socket, bound and listening before the HTTP server exists. A client (nydus-snapshotter polls a new
/// daemon's state 20 times, 100-200 ms apart, and after a crash the dead daemon's socket file is still there, so its
/// tries fail with "connection refused" until the new one listens) can connect from the first milliseconds of a start:
/// its request waits in the listen backlog until Kestrel, which takes a few hundred milliseconds of CPU to come up,
/// adopts this socket and answers it. Bound privately and published as <see cref="ApiSocket"/> does (0600 from its
/// first moment, a stale socket replaced atomically). Disposing it before the server adopted it removes the file.
/// </summary>
public sealed class ApiListener : IDisposable
{
    private const int Backlog = 512;
    private readonly Socket _socket;
    private bool _adopted;

    private ApiListener(Socket socket, string path)
    {
        _socket = socket;
        Path = path;
    }

    /// <summary>Where the socket is published (the <c>--apisock</c> path).</summary>
    public string Path { get; }

    /// <summary>Refuses a live socket or a path that is not a socket (<see cref="ApiSocket.PrepareForBind"/>), then
    /// binds, listens and publishes.</summary>
    public static ApiListener Bind(string path)
    {
        ApiSocket.PrepareForBind(path);
        var privatePath = ApiSocket.BindPrivately(path);
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            socket.Bind(new UnixDomainSocketEndPoint(privatePath));
            socket.Listen(Backlog);
            ApiSocket.Publish(privatePath, path);
            return new ApiListener(socket, path);
        }
        catch
        {
            socket.Dispose();
            ApiSocket.RemovePrivateDirectory(privatePath);
            throw;
        }
    }

    /// <summary>A descriptor of the listening socket for the server to own (Kestrel closes what it is given); from now
    /// on the socket file is the server's to remove.</summary>
    internal ulong Adopt()
    {
        // F_DUPFD_CLOEXEC, not dup(): a plain dup is inherited by every process this one starts (the agent's daemons),
        // which would keep the socket accepting connections nobody answers after this process died.
        using var socket = new Microsoft.Win32.SafeHandles.SafeFileHandle(_socket.Handle, ownsHandle: false);
        var copy = Interop.Libc.Duplicate(socket);
        int fd = (int)copy.DangerousGetHandle();
        copy.SetHandleAsInvalid(); // Kestrel owns and closes the copy
        _adopted = true;
        return (ulong)fd;
    }

    /// <summary>Closes this copy; the published file is removed unless a server adopted the socket.</summary>
    public void Dispose()
    {
        _socket.Dispose();
        if (!_adopted)
        {
            try { File.Delete(Path); } catch (IOException) { }
        }
    }
}
