using System.Net.Sockets;
using Microsoft.Win32.SafeHandles;
using Nydus.Actors.Upgrade;

namespace Nydus.Actors.Tests.Snapshotter;

/// <summary>
/// nydus-snapshotter's supervisor of one daemon (pkg/supervisor/supervisor.go), as it behaves on the socket: for each
/// exchange it removes the socket file, listens, accepts one connection and closes the listener. A save
/// (<see cref="FetchDaemonStatesAsync"/>, after every mount and every start) triggers <c>PUT sendfd</c> and reads the
/// state and the descriptor to EOF, keeping them in memory only (<c>MemStatesStorage</c>). A restore
/// (<see cref="SendStatesTimeout"/>, before a successor starts) serves them to the first connection, and closes the
/// listener after the timeout (10 s in every caller, pkg/manager/daemon_event.go and daemon_adaptor.go) if nobody came.
/// </summary>
public sealed class SnapshotterSupervisor(string path) : IDisposable
{
    private static readonly TimeSpan Io = TimeSpan.FromSeconds(10);
    private readonly object _gate = new();
    private byte[] _data = [];
    private SafeFileHandle? _fd;

    public string Path { get; } = path;

    /// <summary>How many states were received.</summary>
    public int Saves { get; private set; }

    /// <summary>A copy of the state it holds (never written to disk).</summary>
    public byte[] Data
    {
        get { lock (_gate) return [.. _data]; }
    }

    /// <summary><c>FetchDaemonStates(trigger)</c>: listen, run the trigger (the daemon's sendfd) and the receiver at
    /// once, fail if either fails (no timeout on this path upstream; the test bounds it).</summary>
    public async Task FetchDaemonStatesAsync(Func<Task> trigger)
    {
        using var listener = Listen();
        var receiver = Task.Run(() =>
        {
            using var connection = listener.Accept();
            var (data, fd) = DescriptorTransfer.Receive(connection, Io);
            lock (_gate)
            {
                _data = data;
                // save(): a new descriptor replaces the old one.
                _fd?.Dispose();
                _fd = fd;
                Saves++;
            }
        });
        try
        {
            await trigger();
        }
        catch
        {
            listener.Close(); // the receiver's Accept ends with an error, observed below
            try { await receiver; } catch (SocketException) { } catch (ObjectDisposedException) { }
            throw;
        }
        await receiver.WaitAsync(TimeSpan.FromSeconds(30));
    }

    /// <summary><c>SendStatesTimeout(to)</c>: returns at once; the task ends true once a successor fetched the state
    /// and descriptor, false when <paramref name="timeout"/> passed first (the listener is closed then, as upstream).</summary>
    public Task<bool> SendStatesTimeout(TimeSpan timeout)
    {
        var listener = Listen();
        return Task.Run(async () =>
        {
            using (listener)
            {
                var accepting = listener.AcceptAsync();
                if (await Task.WhenAny(accepting, Task.Delay(timeout)) != accepting)
                {
                    listener.Close();
                    try { (await accepting).Dispose(); } catch (SocketException) { } catch (ObjectDisposedException) { }
                    return false;
                }
                using var connection = await accepting;
                byte[] data;
                SafeFileHandle fd;
                lock (_gate)
                {
                    data = [.. _data];
                    fd = _fd ?? throw new InvalidOperationException("the supervisor holds no descriptor to send");
                }
                DescriptorTransfer.Send(connection, data, fd, Io);
                return true;
            }
        });
    }

    private Socket Listen()
    {
        File.Delete(Path);
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            socket.Bind(new UnixDomainSocketEndPoint(Path));
            socket.Listen(1);
            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    public void Dispose()
    {
        lock (_gate)
        {
            _fd?.Dispose();
            _fd = null;
        }
        File.Delete(Path);
    }
}
