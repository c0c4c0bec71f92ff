using System.Net.Sockets;

namespace Nydus.Actors.Api;

/// <summary>The API's Unix socket file: who else is on it, and binding a new one that nobody else can reach.</summary>
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
    /// Checks that <paramref name="path"/> may be taken: refused when a live daemon answers there (two daemons must
    /// never share a socket) and when something other than a socket is there (a file that is not ours is never
    /// deleted); a stale socket left by a dead daemon is replaced later, by the rename of <see cref="BindPrivately"/>.
    /// Creates the parent directory.
    /// </summary>
    public static void PrepareForBind(string path)
    {
        if (IsLive(path))
            throw new IOException($"API socket {path} is in use by a running daemon");
        if (Directory.Exists(path))
            throw new IOException($"API socket path {path} is a directory");
        if (Interop.InputFile.Exists(path) && !Interop.InputFile.IsSocket(path))
            throw new IOException($"API socket path {path} exists and is not a socket ({Interop.InputFile.NotRegular(path, out _) ?? "a regular file"}); " +
                                  "it is left alone: remove it or choose another --apisock");
        var parent = Path.GetDirectoryName(Path.GetFullPath(path));
        if (!string.IsNullOrEmpty(parent)) Directory.CreateDirectory(parent);
    }

    /// <summary>
    /// Makes a private directory (mode 0700, a fresh name: mkdir fails rather than reuse one that exists) beside
    /// <paramref name="path"/> and returns where to bind the socket in it: whatever the umask, no other user can
    /// connect to it there. Once it listens, <see cref="Publish"/> sets it to 0600 and renames it onto
    /// <paramref name="path"/>, which atomically replaces a stale socket. The name is short: a socket path has at most
    /// 107 bytes, and the private one must fit where the public one does.
    /// </summary>
    public static string BindPrivately(string path)
    {
        var parent = Path.GetDirectoryName(Path.GetFullPath(path))!;
        for (int attempt = 0; ; attempt++)
        {
            var dir = Path.Combine(parent, "." + Convert.ToHexString(System.Security.Cryptography.RandomNumberGenerator.GetBytes(3)).ToLowerInvariant());
            if (Interop.Libc.MkdirAt(Interop.InputFile.CurrentDirectory, Interop.PathBytes.FromString(dir), 0b111_000_000) == 0)
                return Path.Combine(dir, "s");
            int errno = System.Runtime.InteropServices.Marshal.GetLastPInvokeError();
            if (errno != 17 /* EEXIST */ || attempt == 16)
                throw new IOException($"cannot make a private directory beside API socket {path}: errno {errno}");
        }
    }

    /// <summary>Restricts the socket bound at <paramref name="privatePath"/> to its owner and moves it to <paramref name="path"/>.</summary>
    public static void Publish(string privatePath, string path)
    {
        File.SetUnixFileMode(privatePath, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        // A non-socket may have appeared since PrepareForBind: refuse it here too rather than rename over it.
        if (Interop.InputFile.Exists(path) && !Interop.InputFile.IsSocket(path))
            throw new IOException($"API socket path {path} exists and is not a socket; it is left alone");
        File.Move(privatePath, path, overwrite: true);
        RemovePrivateDirectory(privatePath);
    }

    /// <summary>Removes the private directory of <paramref name="privatePath"/> (and the socket if still in it).</summary>
    public static void RemovePrivateDirectory(string privatePath)
    {
        try { File.Delete(privatePath); } catch (IOException) { }
        try { Directory.Delete(Path.GetDirectoryName(privatePath)!); } catch (IOException) { }
    }
}
