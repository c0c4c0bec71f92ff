using System.Buffers.Binary;
using System.Net.Sockets;
using Microsoft.Win32.SafeHandles;
using Nydus.Actors.Fuse.FileSystem;
using Nydus.Actors.Fuse.Ops;
using Nydus.Actors.Interop;
using Serilog;

namespace Nydus.Actors.VirtioFs;

/// <summary>
/// The vhost-user-fs socket (<c>nydusd virtiofs --sock PATH</c>): bound when constructed (so a bad path fails the start
/// before anything serves), accepting the VMM (qemu's <c>-chardev socket,path=PATH -device vhost-user-fs-pci,chardev=...</c>)
/// from <see cref="Start"/> to <see cref="Stop"/>. Serves one front-end connection at a time on a dedicated thread, and
/// reads its requests: a 12-byte header (request, flags, size), the payload, and the descriptors that ride along. Each
/// connection gets a fresh <see cref="FuseDispatcher"/> (INIT is per connection) over the same file system, and a
/// <see cref="VhostUserFsBackend"/> that owns its queues. When the VMM goes away (the VM ended or was killed) the
/// connection's workers stop, its descriptors close, the guest memory is unmapped, and the server waits for the next
/// VMM: the daemon and its images stay.
/// </summary>
public sealed class VhostUserFsServer : IDisposable
{
    private static readonly ILogger Log = Serilog.Log.ForContext<VhostUserFsServer>();

    private readonly IFuseFileSystem _fileSystem;
    private readonly FuseInitOptions _initOptions;
    private readonly int _requestQueues;
    private readonly Socket _listener;
    private readonly object _gate = new();
    private Thread? _thread;
    private Socket? _connection;
    private volatile bool _stopping;
    private bool _disposed;
    private long _connections;

    /// <summary>How often the accept loop looks whether it is to stop (a blocking accept could not be woken without
    /// closing the listening socket, which must stay bound between Stop and Start).</summary>
    private static readonly TimeSpan AcceptPoll = TimeSpan.FromMilliseconds(200);

    /// <param name="socketPath">Where to listen (mode 0600); a stale socket there is replaced, any other file refused.</param>
    /// <param name="fileSystem">What the guest mounts (the daemon's VFS).</param>
    /// <param name="initOptions">INIT options, as for a FUSE session.</param>
    /// <param name="requestQueues">Request queues offered besides the hiprio queue.</param>
    public VhostUserFsServer(string socketPath, IFuseFileSystem fileSystem, FuseInitOptions initOptions, int requestQueues)
    {
        _fileSystem = fileSystem;
        _initOptions = initOptions;
        _requestQueues = requestQueues;
        SocketPath = Path.GetFullPath(socketPath);
        // A stale socket (of a killed daemon) is replaced; anything else at the path is someone's file and left alone.
        if (InputFile.IsSocket(SocketPath)) File.Delete(SocketPath);
        else if (Path.Exists(SocketPath)) throw new IOException($"vhost-user socket path {SocketPath} exists and is not a socket; it is left alone");
        _listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            _listener.Bind(new UnixDomainSocketEndPoint(SocketPath));
            File.SetUnixFileMode(SocketPath, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            _listener.Listen(1);
        }
        catch
        {
            _listener.Dispose();
            throw;
        }
    }

    public string SocketPath { get; }

    /// <summary>Front-end connections accepted so far.</summary>
    public long Connections => Interlocked.Read(ref _connections);

    /// <summary>The current connection's backend (its counters and queues), null between connections.</summary>
    public VhostUserFsBackend? Backend { get; private set; }

    /// <summary>True between <see cref="Start"/> and <see cref="Stop"/>.</summary>
    public bool Accepting
    {
        get
        {
            lock (_gate) return _thread is not null && !_stopping;
        }
    }

    /// <summary>Starts accepting front-ends (again after <see cref="Stop"/>); a no-op while accepting.</summary>
    public void Start()
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_thread is not null && !_stopping) return;
            if (_thread is not null) throw new InvalidOperationException("the previous front-end connection has not ended yet");
            _stopping = false;
            _thread = new Thread(AcceptLoop) { IsBackground = true, Name = "vhost-user-fs" };
            _thread.Start();
        }
    }

    /// <summary>
    /// Ends the current connection (its queues stop, its memory is unmapped) and stops accepting; the socket stays
    /// bound, so a VMM that connects meanwhile waits in the backlog until <see cref="Start"/>. False when the
    /// connection thread did not end within 15 s (a request stuck in the file system).
    /// </summary>
    public bool Stop()
    {
        Thread? thread;
        lock (_gate)
        {
            thread = _thread;
            _stopping = true;
            try { _connection?.Shutdown(SocketShutdown.Both); } catch (SocketException) { }
        }

        bool ended = thread is null || !thread.IsAlive || thread.Join(TimeSpan.FromSeconds(15));
        if (!ended) Log.Warning("vhost-user-fs: the connection thread did not end within 15 s");
        lock (_gate)
        {
            if (ended && ReferenceEquals(_thread, thread)) _thread = null;
        }

        return ended;
    }

    private void AcceptLoop()
    {
        while (!_stopping)
        {
            Socket connection;
            try
            {
                if (!_listener.Poll(AcceptPoll, SelectMode.SelectRead)) continue;
                if (_stopping) return;
                connection = _listener.Accept();
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                if (!_stopping) Log.Error("vhost-user-fs: accept on {Socket} failed: {Error}", SocketPath, e.Message);
                return;
            }

            lock (_gate)
            {
                if (_stopping)
                {
                    connection.Dispose();
                    return;
                }

                _connection = connection;
            }

            Interlocked.Increment(ref _connections);
            Log.Information("vhost-user-fs: front-end connected on {Socket}", SocketPath);
            try
            {
                Serve(connection);
            }
            catch (Exception e)
            {
                Log.Error(e, "vhost-user-fs: connection failed");
            }
            finally
            {
                lock (_gate)
                {
                    _connection = null;
                }

                connection.Dispose();
                Log.Information("vhost-user-fs: front-end disconnected; everything it had is released");
            }
        }
    }

    private void Serve(Socket connection)
    {
        using var handle = new SafeFileHandle(connection.Handle, ownsHandle: false);
        var dispatcher = new FuseDispatcher(_fileSystem, _initOptions);
        using var backend = new VhostUserFsBackend(dispatcher, _requestQueues);
        Backend = backend;
        try
        {
            byte[] header = new byte[VhostUserProtocol.HeaderSize];
            byte[] payload = new byte[VhostUserProtocol.MaxPayload];
            var descriptors = new List<SafeFileHandle>();
            while (true)
            {
                if (!ReadExactly(handle, header, descriptors)) return;
                var request = (VhostUserRequest)BinaryPrimitives.ReadUInt32LittleEndian(header);
                uint flags = BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(4));
                uint size = BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(8));
                if ((flags & 0x3) != VhostUserProtocol.FlagVersion || size > VhostUserProtocol.MaxPayload)
                {
                    Log.Error("vhost-user-fs: bad message header (request {Request}, flags 0x{Flags:x}, size {Size}); dropping the connection", (uint)request, flags, size);
                    Dispose(descriptors);
                    return;
                }

                if (size > 0 && !ReadExactly(handle, payload.AsSpan(0, (int)size), descriptors))
                {
                    Dispose(descriptors);
                    return;
                }

                Log.Debug("vhost-user-fs: {Request} ({Size} bytes, {Fds} fds)", request, size, descriptors.Count);
                byte[]? reply;
                try
                {
                    reply = backend.Handle(request, payload.AsSpan(0, (int)size), descriptors);
                }
                catch (VhostUserException e)
                {
                    Log.Error("vhost-user-fs: {Error}; dropping the connection", e.Message);
                    return;
                }

                if (reply is null && backend.WantsAck(flags, request)) reply = new byte[8];
                if (reply is not null && !Send(handle, (uint)request, reply)) return;
            }
        }
        finally
        {
            Backend = null;
            Log.Information("vhost-user-fs: {Requests} FUSE requests served, {BadChains} malformed chains refused, {Broken} queues stopped",
                backend.Counters.Requests, backend.Counters.BadChains, backend.Counters.BrokenQueues);
        }
    }

    /// <returns>False when the peer closed (or the read failed): the connection ends.</returns>
    private static bool ReadExactly(SafeFileHandle socket, Span<byte> buffer, List<SafeFileHandle> descriptors)
    {
        int at = 0;
        while (at < buffer.Length)
        {
            nint n = Libc.ReceiveWithDescriptors(socket, buffer[at..], descriptors);
            if (n <= 0)
            {
                if (n < 0) Log.Warning("vhost-user-fs: receive failed: {Errno}", Libc.LastErrno);
                Dispose(descriptors);
                return false;
            }

            at += (int)n;
        }

        return true;
    }

    private static bool Send(SafeFileHandle socket, uint request, byte[] payload)
    {
        var message = new byte[VhostUserProtocol.HeaderSize + payload.Length];
        BinaryPrimitives.WriteUInt32LittleEndian(message, request);
        BinaryPrimitives.WriteUInt32LittleEndian(message.AsSpan(4), VhostUserProtocol.FlagVersion | VhostUserProtocol.FlagReply);
        BinaryPrimitives.WriteUInt32LittleEndian(message.AsSpan(8), (uint)payload.Length);
        payload.CopyTo(message, VhostUserProtocol.HeaderSize);
        if (Libc.SendAll(socket, message)) return true;
        Log.Warning("vhost-user-fs: reply to request {Request} not sent: {Errno}", request, Libc.LastErrno);
        return false;
    }

    private static void Dispose(List<SafeFileHandle> descriptors)
    {
        foreach (SafeFileHandle fd in descriptors) fd.Dispose();
        descriptors.Clear();
    }

    /// <summary>Stops (as <see cref="Stop"/>), closes the listening socket and removes it.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
        }

        Stop();
        _listener.Dispose();
        try { File.Delete(SocketPath); } catch (IOException) { }
    }
}
