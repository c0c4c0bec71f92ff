using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Nydus.Actors.Interop;
using Serilog;

namespace Nydus.Actors.Block.Nbd;

/// <summary>Limits of an <see cref="NbdServer"/>.</summary>
public sealed record NbdServerOptions
{
    /// <summary>Time a client has from connecting to choosing an export.</summary>
    public TimeSpan HandshakeTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Connections served at once; further ones are closed at accept (and logged).</summary>
    public int MaxConnections { get; init; } = 4096;

    /// <summary>Largest read (and the maximum block size advertised); larger requests get EINVAL.</summary>
    public int MaxRequestBytes { get; init; } = 32 << 20;

    /// <summary>
    /// Requests of one connection served at once (upstream's <c>nydusd nbd --threads</c>, default 4): reads run on
    /// pool threads and answer in any order. 1 serves one read at a time.
    /// </summary>
    public int Threads { get; init; } = 4;

    /// <summary>
    /// Reads of ranges stored as they are in a local file (the bootstrap, a localfs raw device) are spliced from
    /// the file to the socket through a pipe instead of copied through a buffer (<see cref="SplicePipe"/>).
    /// </summary>
    public bool Splice { get; init; } = true;

    /// <summary>SO_SNDBUF of each connection (the kernel caps it at net.core.wmem_max).</summary>
    public int SendBufferBytes { get; init; } = 4 << 20;

    /// <summary>Largest handshake option payload; a client sending more is disconnected.</summary>
    public int MaxOptionBytes { get; init; } = 64 << 10;
}

/// <summary>What the connections of one server did, summed (read with Interlocked).</summary>
internal sealed class NbdCounters
{
    public long SplicedReads;
}

/// <summary>
/// A read-only NBD server (standard protocol, fixed newstyle handshake) for the exports of an
/// <see cref="NbdExportTable"/>, listening on any number of Unix socket paths and TCP addresses. Every connection is
/// an async loop on the thread pool (an idle client costs no thread); many clients may read one export at once.
/// Dispose stops listening, closes every connection and waits for their loops (bounded).
/// </summary>
public sealed class NbdServer : IDisposable
{
    private static readonly ILogger Log = Serilog.Log.ForContext<NbdServer>();

    private readonly NbdExportTable _exports;
    private readonly NbdServerOptions _options;
    private readonly CancellationTokenSource _stopping = new();
    private readonly List<(Socket Socket, Task Loop, string? Path)> _listeners = new();
    private readonly ConcurrentDictionary<Socket, Task> _connections = new();
    private long _accepted;
    private long _refused;
    private readonly NbdCounters _counters = new();

    public NbdServer(NbdExportTable exports, NbdServerOptions? options = null)
    {
        _exports = exports;
        _options = options ?? new NbdServerOptions();
    }

    public NbdExportTable Exports => _exports;

    /// <summary>Connections open now (handshake or transmission).</summary>
    public int ConnectionCount => _connections.Count;

    public long AcceptedConnections => Interlocked.Read(ref _accepted);

    /// <summary>Read replies whose data went from a local file to the socket by splice (never copied through the process).</summary>
    public long SplicedReads => Interlocked.Read(ref _counters.SplicedReads);

    /// <summary>Connections closed at accept because <see cref="NbdServerOptions.MaxConnections"/> were open.</summary>
    public long RefusedConnections => Interlocked.Read(ref _refused);

    /// <summary>The addresses listened on: Unix socket paths and "host:port" for TCP (the bound port).</summary>
    public IReadOnlyList<string> Addresses
    {
        get
        {
            lock (_listeners)
            {
                return _listeners.Select(l => l.Path ?? ((IPEndPoint)l.Socket.LocalEndPoint!).ToString()).ToArray();
            }
        }
    }

    /// <summary>Listens on a Unix socket (mode 0600: the exports are the images' whole content).</summary>
    public void ListenUnix(string path)
    {
        if (File.Exists(path) || Directory.Exists(path))
        {
            // A stale socket left by a dead server would make bind fail; a live one answers connect. Anything
            // that is not a socket is someone's file: never removed.
            if (!IsSocketFile(path)) throw new IOException($"NBD socket path {path} exists and is not a socket");
            if (IsLive(path)) throw new IOException($"NBD socket {path} is in use by another server");
            File.Delete(path);
        }

        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            socket.Bind(new UnixDomainSocketEndPoint(path));
            File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            socket.Listen(512);
        }
        catch
        {
            socket.Dispose();
            throw;
        }

        Start(socket, path);
    }

    /// <summary>Listens on TCP (port 0 picks one; see <see cref="Addresses"/>).</summary>
    public IPEndPoint ListenTcp(IPEndPoint endpoint)
    {
        var socket = new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
            socket.Bind(endpoint);
            socket.Listen(512);
        }
        catch
        {
            socket.Dispose();
            throw;
        }

        Start(socket, null);
        return (IPEndPoint)socket.LocalEndPoint!;
    }

    private static bool IsSocketFile(string path)
    {
        using var cwd = new Microsoft.Win32.SafeHandles.SafeFileHandle(Libc.AT_FDCWD, ownsHandle: false);
        byte[] name = [.. System.Text.Encoding.UTF8.GetBytes(Path.GetFullPath(path)), 0];
        return Libc.StatxAt(cwd, name, Libc.AT_SYMLINK_NOFOLLOW, Libc.STATX_BASIC_STATS, out Statx stat) == 0
            && stat.FileType == FileModes.S_IFSOCK;
    }

    private static bool IsLive(string path)
    {
        using var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            probe.Connect(new UnixDomainSocketEndPoint(path));
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    private void Start(Socket listener, string? path)
    {
        lock (_listeners)
        {
            _listeners.Add((listener, Task.Run(() => AcceptLoopAsync(listener)), path));
        }
    }

    private async Task AcceptLoopAsync(Socket listener)
    {
        while (!_stopping.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await listener.AcceptAsync(_stopping.Token);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException
                                          || (e is SocketException && _stopping.IsCancellationRequested))
            {
                return;
            }
            catch (SocketException e)
            {
                // EMFILE and friends: say so and keep accepting once something is closed.
                Log.Warning("NBD accept failed: {Error}", e.Message);
                await Task.Delay(100);
                continue;
            }

            if (_connections.Count >= _options.MaxConnections)
            {
                Interlocked.Increment(ref _refused);
                Log.Warning("NBD connection refused: {Max} connections are open", _options.MaxConnections);
                client.Dispose();
                continue;
            }

            Interlocked.Increment(ref _accepted);
            if (client.AddressFamily != AddressFamily.Unix) client.NoDelay = true;
            // A read reply (nbdcopy asks 256 KiB, the kernel up to 32 MiB here) that fits the socket buffer is sent
            // by one send that completes at once; with the default (~208 KiB) every such reply was a partial send,
            // an EAGAIN and a wait for the socket to drain. The kernel caps it at net.core.wmem_max.
            client.SendBufferSize = _options.SendBufferBytes;
            var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            Task loop = ServeAsync(client, started.Task);
            _connections[client] = loop;
            started.SetResult();
        }
    }

    private async Task ServeAsync(Socket client, Task registered)
    {
        await registered;
        try
        {
            await new NbdConnection(client, _exports, _options, _counters).RunAsync(_stopping.Token);
        }
        catch (Exception e) when (e is OperationCanceledException or EndOfStreamException or SocketException
                                      or ObjectDisposedException or NbdProtocolException or IOException)
        {
            // The client left, broke the protocol, or the server is stopping: the connection ends, nothing else.
            if (e is NbdProtocolException) Log.Information("NBD client dropped: {Reason}", e.Message);
        }
        catch (Exception e)
        {
            Log.Error(e, "NBD connection failed");
        }
        finally
        {
            _connections.TryRemove(client, out _);
            client.Dispose();
        }
    }

    public void Dispose()
    {
        _stopping.Cancel();
        (Socket Socket, Task Loop, string? Path)[] listeners;
        lock (_listeners)
        {
            listeners = _listeners.ToArray();
            _listeners.Clear();
        }

        foreach (var listener in listeners)
        {
            // The path goes first: once the socket is closed, a successor (live upgrade) may bind a new socket at
            // the same path, which a later delete would take away from it.
            if (listener.Path is not null) File.Delete(listener.Path);
            listener.Socket.Dispose();
        }

        Task[] loops = [.. listeners.Select(l => l.Loop), .. _connections.Values];
        foreach (Socket connection in _connections.Keys) connection.Dispose();
        if (!Task.WaitAll(loops, TimeSpan.FromSeconds(5)))
        {
            Log.Warning("NBD server: {Count} connections did not end within 5 s of stopping", _connections.Count);
        }
    }
}
