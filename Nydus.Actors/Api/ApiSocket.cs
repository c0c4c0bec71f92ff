using System.Net.Sockets;

namespace Nydus.Actors.Api;

/// <summary>The API's Unix socket file: who else is on it, and clearing a stale one before binding.</summary>
public static class ApiSocket
{
    /// <summary>True when a process accepts connections on <paramref name="path"/>.</summary>
    public static bool IsLive(string path)
    {
        if (!File.Exists(path) && !Directory.Exists(path)) return false;
        try
        {
            using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            socket.Connect(new UnixDomainSocketEndPoint(path));
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    /// <summary>
    /// Makes <paramref name="path"/> free to bind: refuses when a live daemon answers there (two daemons must never
    /// share a socket), removes a stale file left by a dead one, and creates the parent directory.
    /// </summary>
    public static void PrepareForBind(string path)
    {
        if (IsLive(path))
            throw new IOException($"API socket {path} is in use by a running daemon");
        if (Directory.Exists(path))
            throw new IOException($"API socket path {path} is a directory");
        if (File.Exists(path)) File.Delete(path);
        var parent = Path.GetDirectoryName(Path.GetFullPath(path));
        if (!string.IsNullOrEmpty(parent)) Directory.CreateDirectory(parent);
    }
}
