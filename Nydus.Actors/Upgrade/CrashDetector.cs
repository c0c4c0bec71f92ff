using System.Net.Sockets;

namespace Nydus.Actors.Upgrade;

/// <summary>
/// Upstream's crash detection (§3, <c>fusedev.rs</c>): a predecessor crashed when the mountpoint is still in
/// <c>/proc/self/mounts</c> and the API socket path exists but <c>connect()</c> fails. Must run before the API server
/// deletes and rebinds the socket. Reads the mount table instead of stat-ing the mountpoint (a dead FUSE server's
/// mountpoint hangs stat).
/// </summary>
public static class CrashDetector
{
    public static bool PredecessorCrashed(string mountpoint, string apiSocketPath, string mountsFile = "/proc/self/mounts") =>
        IsMounted(mountpoint, mountsFile) && File.Exists(apiSocketPath) && !CanConnect(apiSocketPath);

    /// <summary>Whether <paramref name="mountpoint"/> (as written, trailing slash ignored) appears in a mounts table.</summary>
    public static bool IsMounted(string mountpoint, string mountsFile = "/proc/self/mounts")
    {
        string wanted = mountpoint.Length > 1 ? mountpoint.TrimEnd('/') : mountpoint;
        foreach (string line in File.ReadLines(mountsFile))
        {
            string[] fields = line.Split(' ');
            if (fields.Length > 1 && Unescape(fields[1]) == wanted)
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>Whether something accepts connections on the Unix socket path (connect never waits on a Unix socket).</summary>
    public static bool CanConnect(string socketPath)
    {
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            socket.Connect(new UnixDomainSocketEndPoint(socketPath));
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    // /proc/self/mounts escapes space, tab, newline and backslash as \ooo.
    private static string Unescape(string field)
    {
        if (!field.Contains('\\'))
        {
            return field;
        }

        var builder = new System.Text.StringBuilder(field.Length);
        for (int i = 0; i < field.Length; i++)
        {
            if (field[i] == '\\' && i + 3 < field.Length && IsOctal(field[i + 1]) && IsOctal(field[i + 2]) && IsOctal(field[i + 3]))
            {
                builder.Append((char)Convert.ToInt32(field.Substring(i + 1, 3), 8));
                i += 3;
            }
            else
            {
                builder.Append(field[i]);
            }
        }

        return builder.ToString();
    }

    private static bool IsOctal(char c) => c is >= '0' and <= '7';
}
