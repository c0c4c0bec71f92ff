using System.Net.Sockets;
using Nydus.Actors.Tests.Support;
using Nydus.Actors.Upgrade;
using Xunit;

namespace Nydus.Actors.Tests.Upgrade;

/// <summary>Upstream's rule with a real mount table and real sockets: mounted + socket file + connect fails.</summary>
public sealed class CrashDetectorTests : IDisposable
{
    private readonly TempDir _dir = new("crash");

    public void Dispose() => _dir.Dispose();

    private string StaleSocket()
    {
        var bound = _dir.Combine($"b-{Guid.NewGuid().ToString("N")[..8]}.sock");
        var path = _dir.Combine($"s-{Guid.NewGuid().ToString("N")[..8]}.sock");
        using (var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified))
        {
            socket.Bind(new UnixDomainSocketEndPoint(bound));
            // .NET unlinks the path it bound on dispose; the renamed socket inode stays behind.
            File.Move(bound, path);
        }

        Assert.True(File.Exists(path));
        return path; // closed without unlinking: the file stays, connect() is refused — what a SIGKILLed daemon leaves
    }

    [Fact]
    public void Mounted_and_stale_socket_is_a_crash()
    {
        Assert.True(CrashDetector.PredecessorCrashed("/proc", StaleSocket()));
    }

    [Fact]
    public void Live_api_socket_is_not_a_crash()
    {
        var path = _dir.Combine("live.sock");
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        socket.Bind(new UnixDomainSocketEndPoint(path));
        socket.Listen(1);
        Assert.False(CrashDetector.PredecessorCrashed("/proc", path));
    }

    [Fact]
    public void Missing_socket_or_unmounted_path_is_not_a_crash()
    {
        Assert.False(CrashDetector.PredecessorCrashed("/proc", _dir.Combine("none.sock")));
        Assert.False(CrashDetector.PredecessorCrashed(_dir.Path, StaleSocket()));
    }

    [Fact]
    public void Escaped_mountpoints_in_the_mount_table_are_matched()
    {
        var table = _dir.Combine("mounts");
        File.WriteAllText(table, "rafs /mnt/with\\040space fuse rw 0 0\nproc /proc proc rw 0 0\n");
        Assert.True(CrashDetector.IsMounted("/mnt/with space", table));
        Assert.True(CrashDetector.IsMounted("/mnt/with space/", table));
        Assert.False(CrashDetector.IsMounted("/mnt/with", table));
    }
}
