using System.Net.Sockets;
using Microsoft.Win32.SafeHandles;

namespace Nydus.Actors.Upgrade;

/// <summary>
/// The supervisor side of upstream's socket (what nydus-snapshotter's <c>pkg/supervisor</c> does), for one daemon:
/// listens on a path; each accepted connection is either a save (read to EOF, exactly one descriptor, replaces the
/// stored state) or, after <see cref="ServeNextRestore"/>, a restore (send the stored state and a copy of the
/// descriptor; the stored copy stays). A stand-in for the snapshotter in tests, and the node agent's building block.
/// Accepting runs on one background thread; each connection is bounded by <see cref="TransferTimeout"/>.
/// </summary>
public sealed class SupervisorServer : IDisposable
{
    private readonly Socket _listener;
    private readonly Thread _acceptThread;
    private readonly object _gate = new();
    private volatile bool _stopped;
    private byte[]? _state;
    private SafeFileHandle? _descriptor;
    private int _saves;
    private bool _serveRestore;
    private TaskCompletionSource _restoreServed = NewSignal();
    private TaskCompletionSource _saved = NewSignal();

    public SupervisorServer(string path, TimeSpan transferTimeout)
    {
        Path = path;
        TransferTimeout = transferTimeout;
        File.Delete(path);
        _listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        _listener.Bind(new UnixDomainSocketEndPoint(path));
        _listener.Listen(8);
        _acceptThread = new Thread(AcceptLoop) { IsBackground = true, Name = $"supervisor {System.IO.Path.GetFileName(path)}" };
        _acceptThread.Start();
    }

    public string Path { get; }

    public TimeSpan TransferTimeout { get; }

    /// <summary>How many saves were stored.</summary>
    public int Saves => Volatile.Read(ref _saves);

    /// <summary>The last transfer failure (bad sender, no descriptor, timeout), for diagnostics.</summary>
    public Exception? LastError { get; private set; }

    /// <summary>A copy of the latest stored state bytes, or null before the first save.</summary>
    public byte[]? State
    {
        get { lock (_gate) return _state?.ToArray(); }
    }

    /// <summary>Whether a (state, descriptor) pair is stored.</summary>
    public bool HasState
    {
        get { lock (_gate) return _descriptor is not null; }
    }

    /// <summary>A task that completes at the next successful save.</summary>
    public Task NextSave
    {
        get { lock (_gate) return _saved.Task; }
    }

    /// <summary>Makes the next accepted connection a restore; the task completes when it was served.</summary>
    public Task ServeNextRestore()
    {
        lock (_gate)
        {
            _serveRestore = true;
            return _restoreServed.Task;
        }
    }

    /// <summary>Stores a state directly (e.g. from a journal), as if a daemon had saved it. Takes a dup of the fd.</summary>
    public void Store(byte[] state, SafeFileHandle descriptor)
    {
        var copy = Interop.Libc.Duplicate(descriptor);
        lock (_gate)
        {
            _descriptor?.Dispose();
            _descriptor = copy;
            _state = state.ToArray();
        }
    }

    private void AcceptLoop()
    {
        while (!_stopped)
        {
            Socket connection;
            try
            {
                if (!_listener.Poll(200_000, SelectMode.SelectRead))
                {
                    continue;
                }

                connection = _listener.Accept();
            }
            catch (Exception) when (_stopped)
            {
                return;
            }
            catch (SocketException e)
            {
                LastError = e;
                continue;
            }

            using (connection)
            {
                try
                {
                    Handle(connection);
                }
                catch (Exception e)
                {
                    LastError = e;
                }
            }
        }
    }

    private void Handle(Socket connection)
    {
        bool restore;
        byte[]? state;
        SafeFileHandle? descriptor;
        TaskCompletionSource served;
        lock (_gate)
        {
            restore = _serveRestore;
            _serveRestore = false;
            state = _state;
            descriptor = _descriptor;
            served = _restoreServed;
            if (restore)
            {
                _restoreServed = NewSignal();
            }
        }

        if (restore)
        {
            if (state is null || descriptor is null)
            {
                served.TrySetException(new UpgradeException(UpgradeErrorKind.NoEnoughFds, "supervisor has no stored state to restore"));
                return; // closing without data: the daemon's receive sees EOF and no descriptor
            }

            try
            {
                DescriptorTransfer.Send(connection, state, descriptor, TransferTimeout);
                served.TrySetResult();
            }
            catch (Exception e)
            {
                served.TrySetException(e);
                throw;
            }

            return;
        }

        var (data, fd) = DescriptorTransfer.Receive(connection, TransferTimeout);
        TaskCompletionSource saved;
        lock (_gate)
        {
            _descriptor?.Dispose();
            _descriptor = fd;
            _state = data;
            _saves++;
            saved = _saved;
            _saved = NewSignal();
        }

        saved.TrySetResult();
    }

    private static TaskCompletionSource NewSignal() => new(TaskCreationOptions.RunContinuationsAsynchronously);

    public void Dispose()
    {
        _stopped = true;
        _listener.Dispose();
        _acceptThread.Join(TimeSpan.FromSeconds(5));
        lock (_gate)
        {
            _descriptor?.Dispose();
            _descriptor = null;
            _restoreServed.TrySetCanceled();
            _saved.TrySetCanceled();
        }

        try { File.Delete(Path); } catch (IOException) { }
    }
}
