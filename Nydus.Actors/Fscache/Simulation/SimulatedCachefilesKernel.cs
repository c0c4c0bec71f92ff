using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Globalization;
using System.Net.Sockets;
using System.Text;
using Microsoft.Win32.SafeHandles;
using Nydus.Actors.Interop;

namespace Nydus.Actors.Fscache.Simulation;

/// <summary>
/// A test double for the kernel's side of cachefiles on-demand mode (no cachefiles module on the test machines):
/// listens on a Unix SOCK_SEQPACKET socket for one daemon connection (<see cref="SimulatedCachefilesDevice"/>), sends
/// it requests in the exact uapi layout, and checks its answers as the kernel would. Each object is a real file under
/// <see cref="CacheDir"/> (the cache file), whose read-write descriptor is sent with the OPEN as the anonymous fd;
/// <c>copen</c> truncates it to the size the daemon gave; a READ is complete when the daemon's <c>cread</c> (the
/// READ_COMPLETE ioctl) names it and the object of the fd it was issued on; the kernel then reads the cache file
/// back, and a range the daemon left as a hole is what the kernel turns into EIO. Replies to requests already
/// answered, or never sent, are counted (<see cref="UnexpectedReplies"/>).
/// <para>
/// Takeover, as fs/cachefiles/ondemand.c (Linux 6.8+) does it: a request is "new" until the daemon reads it (the
/// device's <c>read</c> notice); <c>restore</c> makes every request read and not answered new again, and an OPEN is
/// then sent with a fresh anonymous fd and a fresh object id. An object whose anonymous fd was closed (its daemon
/// exited or was killed: every descriptor of that delivery gone, which an open file description lock taken on it
/// tells) is closed for the kernel; a READ for it is not delivered but makes the kernel re-open the object first
/// (a new OPEN, a new object id), and goes out once the daemon answered that OPEN. The real kernel fills a READ's
/// object id when the daemon reads it; here a READ already queued on the socket when its object's fd died reaches
/// the daemon with the old id, so it is offered again once the daemon has read that copy (which it cannot serve and drops).
/// </para>
/// All sends go through one queue and one thread, so a daemon that is not reading never blocks the test.
/// </summary>
public sealed class SimulatedCachefilesKernel : IDisposable
{
    // Each delivery of an anonymous fd holds a one-byte lock at its own offset past any object's end.
    private const long LockBase = 1L << 40;

    private readonly Socket _listener;
    private readonly string _socketPath;
    private readonly Thread _acceptor;
    private readonly Thread _sender;
    private readonly BlockingCollection<Outgoing> _outbox = new();
    private readonly object _gate = new();
    private readonly Dictionary<uint, Pending> _pending = new();
    private readonly ConcurrentDictionary<uint, byte> _answered = new();
    private readonly List<SimulatedObject> _objects = [];
    private readonly ConcurrentQueue<string> _commands = new();
    private readonly ConcurrentQueue<(string, Errno)> _fileCommands = new();
    private string _cacheDir;
    private readonly ConcurrentQueue<string> _unexpected = new();
    private readonly TaskCompletionSource _bound = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource<Socket> _connected = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _nextMessage;
    private int _nextObject;
    private long _nextLockSlot;
    private int _restores, _reopens, _redelivered, _staleReads;
    private volatile bool _disposed;

    private sealed class Pending(byte[] message, SimulatedObject? opening, SimulatedObject? reading)
    {
        public byte[] Message { get; } = message;
        public SimulatedObject? Opening { get; } = opening;
        public SimulatedObject? Reading { get; } = reading;
        public TaskCompletionSource<string> Answer { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
        /// <summary>The daemon has read it (the kernel's "new" mark cleared).</summary>
        public bool Delivered { get; set; }
        /// <summary>A READ waiting for its object's re-open.</summary>
        public bool Held { get; set; }
        /// <summary>An OPEN the kernel sent by itself, to re-open an object whose fd was closed.</summary>
        public bool IsReopen { get; init; }
        public uint ObjectIdSent => BinaryPrimitives.ReadUInt32LittleEndian(Message.AsSpan(12));
    }

    private sealed record Outgoing(byte[] Message, SafeFileHandle? Fd);

    private SimulatedCachefilesKernel(string socketPath, string cacheDir)
    {
        _socketPath = socketPath;
        _cacheDir = cacheDir;
        Directory.CreateDirectory(cacheDir);
        _listener = new Socket(AddressFamily.Unix, SocketType.Seqpacket, ProtocolType.Unspecified);
        _listener.Bind(new UnixDomainSocketEndPoint(socketPath));
        _listener.Listen(4);
        _acceptor = new Thread(AcceptLoop) { IsBackground = true, Name = "sim-cachefiles" };
        _acceptor.Start();
        _sender = new Thread(SendLoop) { IsBackground = true, Name = "sim-cachefiles-send" };
        _sender.Start();
    }

    /// <summary>Listens on <paramref name="socketPath"/>; cache files go to the daemon's <c>dir</c>, or to
    /// <paramref name="cacheDir"/> until it wrote one.</summary>
    public static SimulatedCachefilesKernel Listen(string socketPath, string cacheDir) => new(socketPath, cacheDir);

    /// <summary>The cache dir: the daemon's <c>dir</c> command once written (volumes in its <c>cache</c> subdirectory).</summary>
    public string CacheDir => Volatile.Read(ref _cacheDir);

    /// <summary>The <c>inuse</c>/<c>cull</c> commands the daemon wrote, each with the errno it was answered.</summary>
    public IReadOnlyList<(string Command, Errno Answer)> FileCommands => [.. _fileCommands];

    /// <summary>Every command the daemon wrote, in order (<c>dir</c>, <c>tag</c>, <c>bind ondemand</c>, <c>restore</c>).</summary>
    public IReadOnlyList<string> Commands => [.. _commands];

    /// <summary>Answers for requests already answered or never sent, and <c>cread</c> on the wrong object's fd.</summary>
    public IReadOnlyList<string> UnexpectedReplies => [.. _unexpected];

    public int Restores => Volatile.Read(ref _restores);

    /// <summary>Objects the kernel re-opened because their anonymous fd had been closed while READs were pending.</summary>
    public int Reopens => Volatile.Read(ref _reopens);

    /// <summary>Requests sent again by a <c>restore</c>: read by a daemon that never answered them.</summary>
    public int Redelivered => Volatile.Read(ref _redelivered);

    /// <summary>READ copies a daemon read after their object's fd was gone (offered again with the new object id).</summary>
    public int StaleReads => Volatile.Read(ref _staleReads);

    /// <summary>Requests sent and not answered yet.</summary>
    public int InFlight
    {
        get
        {
            lock (_gate) return _pending.Count;
        }
    }

    /// <summary>Completes once the daemon wrote <c>bind ondemand</c>.</summary>
    public Task Bound => _bound.Task;

    /// <summary>Sends an OPEN for <paramref name="cookieKey"/> in volume <paramref name="volumeKey"/> without waiting.
    /// The cache file is where cachefiles keeps it (<see cref="CachefilesLayout"/>) under the daemon's <c>dir</c>.</summary>
    public (SimulatedObject Object, Task<string> Answer) StartOpen(string volumeKey, string cookieKey)
    {
        uint objectId = NextObjectId();
        uint id = NextMessageId();
        var pending = new Pending(CachefilesMessage.EncodeOpen(id, objectId, volumeKey, cookieKey, fd: -1), null, null);
        lock (_gate)
        {
            string path = CachefilesLayout.CookiePath(CacheDir, volumeKey, cookieKey);
            // The kernel never has one cookie open twice; tests that do get a file of their own beside it.
            if (_objects.Any(o => o.CachePath == path && o.State is not (ObjectState.Closed or ObjectState.Refused)))
                path += "." + objectId;
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            File.WriteAllBytes(path, []);
            var obj = new SimulatedObject(objectId, path, volumeKey, cookieKey);
            pending = new Pending(pending.Message, obj, null);
            _objects.Add(obj);
            _pending[id] = pending;
            DeliverOpen(pending, firstTime: true);
        }
        return (pending.Opening!, pending.Answer.Task);
    }

    /// <summary>OPEN and wait for the <c>copen</c>: the object with its size, or with the errno the daemon refused it with.</summary>
    public async Task<SimulatedObject> OpenAsync(string volumeKey, string cookieKey, TimeSpan timeout)
    {
        var (obj, answer) = StartOpen(volumeKey, cookieKey);
        await answer.WaitAsync(timeout);
        return obj;
    }

    /// <summary>Sends a READ of [<paramref name="offset"/>, +<paramref name="length"/>) without waiting (or, when the
    /// object's fd was closed, re-opens the object first).</summary>
    public Task<string> StartRead(SimulatedObject obj, long offset, long length)
    {
        uint id = NextMessageId();
        var pending = new Pending(CachefilesMessage.EncodeRead(id, obj.ObjectId, (ulong)offset, (ulong)length), null, obj);
        lock (_gate)
        {
            _pending[id] = pending;
            DeliverRead(pending);
        }
        return pending.Answer.Task;
    }

    /// <summary>READ and wait for its completion, then read the cache file back as the kernel would.</summary>
    public async Task<SimulatedRead> ReadAsync(SimulatedObject obj, long offset, long length, TimeSpan timeout)
    {
        await StartRead(obj, offset, length).WaitAsync(timeout);
        return ReadBack(obj, offset, length);
    }

    /// <summary>The cache file's bytes in the range (clamped to the object's size), and whether the daemon filled
    /// all of it (no hole: SEEK_HOLE, as cachefiles checks presence).</summary>
    public static SimulatedRead ReadBack(SimulatedObject obj, long offset, long length)
    {
        using var file = File.OpenHandle(obj.CachePath, FileMode.Open, FileAccess.Read);
        long size = RandomAccess.GetLength(file);
        long end = Math.Min(size, offset + length);
        var bytes = new byte[Math.Max(0, end - offset)];
        int done = 0;
        while (done < bytes.Length)
        {
            int n = RandomAccess.Read(file, bytes.AsSpan(done), offset + done);
            if (n == 0) break;
            done += n;
        }
        long hole = bytes.Length == 0 ? offset : Libc.LSeek(file, offset, Libc.SEEK_HOLE);
        return new SimulatedRead(bytes, bytes.Length > 0 && hole >= end);
    }

    /// <summary>CLOSE: no answer is expected; the daemon drops the object and its fd.</summary>
    public void Close(SimulatedObject obj)
    {
        lock (_gate)
        {
            obj.State = ObjectState.Closed;
            _outbox.Add(new Outgoing(CachefilesMessage.EncodeClose(NextMessageId(), obj.ObjectId), null));
        }
    }

    /// <summary>Sends any bytes as one message (malformed requests), with a copy of <paramref name="fd"/> when given.</summary>
    public void SendRaw(byte[] message, SafeFileHandle? fd = null)
    {
        if (!_connected.Task.IsCompleted) throw new InvalidOperationException("no daemon is connected");
        _outbox.Add(new Outgoing(message, fd is null ? null : Libc.Duplicate(fd)));
    }

    /// <summary>A message id for <see cref="SendRaw"/> callers that then wait with <see cref="Expect"/>.</summary>
    public uint NextMessageId() => (uint)Interlocked.Increment(ref _nextMessage);

    private uint NextObjectId() => (uint)Interlocked.Increment(ref _nextObject);

    /// <summary>Registers a request sent with <see cref="SendRaw"/>, to wait for its answer.</summary>
    public Task<string> Expect(uint messageId)
    {
        var pending = new Pending([], null, null);
        lock (_gate) _pending[messageId] = pending;
        return pending.Answer.Task;
    }

    /// <summary>Queues an OPEN with a fresh anonymous fd (locked, so the kernel can tell when every copy of it is
    /// closed); a resent one gets a fresh object id too, as <c>cachefiles_ondemand_get_fd</c> allocates one per read.</summary>
    private void DeliverOpen(Pending pending, bool firstTime)
    {
        var obj = pending.Opening!;
        if (!firstTime)
        {
            obj.ObjectId = NextObjectId();
            BinaryPrimitives.WriteUInt32LittleEndian(pending.Message.AsSpan(12), obj.ObjectId);
        }
        pending.Delivered = false;
        var fd = File.OpenHandle(obj.CachePath, FileMode.Open, FileAccess.ReadWrite);
        long slot = Interlocked.Increment(ref _nextLockSlot);
        var held = new Libc.FileLock { Type = Libc.F_WRLCK, Start = LockBase + slot, Length = 1 };
        if (Libc.FcntlLock(fd, Libc.F_OFD_SETLK, ref held) < 0)
        {
            var errno = Libc.LastErrno;
            fd.Dispose();
            throw new IOException($"F_OFD_SETLK on {obj.CachePath} failed: {errno}");
        }
        obj.LockSlot = slot;
        _outbox.Add(new Outgoing(pending.Message, fd));
    }

    /// <summary>Queues a READ with the object's current id, or holds it while its object is (re-)opened.</summary>
    private void DeliverRead(Pending pending)
    {
        var obj = pending.Reading!;
        pending.Delivered = false;
        if (obj.State == ObjectState.Reopening || (obj.State == ObjectState.Open && !HasLiveFd(obj) && Reopen(obj)))
        {
            pending.Held = true;
            return;
        }
        pending.Held = false;
        BinaryPrimitives.WriteUInt32LittleEndian(pending.Message.AsSpan(12), obj.ObjectId);
        _outbox.Add(new Outgoing(pending.Message, null));
    }

    /// <summary>The kernel's reopen work: a new OPEN for an object whose fd is gone. Always true (held).</summary>
    private bool Reopen(SimulatedObject obj)
    {
        obj.State = ObjectState.Reopening;
        Interlocked.Increment(ref _reopens);
        uint id = NextMessageId();
        var pending = new Pending(CachefilesMessage.EncodeOpen(id, obj.ObjectId, obj.VolumeKey, obj.CookieKey, fd: -1), obj, null) { IsReopen = true };
        _pending[id] = pending;
        DeliverOpen(pending, firstTime: false);
        return true;
    }

    /// <summary>Whether some process still holds the anonymous fd of the object's last delivery.</summary>
    private static bool HasLiveFd(SimulatedObject obj)
    {
        obj.Probe ??= File.OpenHandle(obj.CachePath, FileMode.Open, FileAccess.ReadWrite);
        var query = new Libc.FileLock { Type = Libc.F_WRLCK, Start = LockBase + obj.LockSlot, Length = 1 };
        if (Libc.FcntlLock(obj.Probe, Libc.F_OFD_GETLK, ref query) < 0)
            throw new IOException($"F_OFD_GETLK on {obj.CachePath} failed: {Libc.LastErrno}");
        return query.Type != Libc.F_UNLCK;
    }

    private void SendLoop()
    {
        try
        {
            var daemon = _connected.Task.GetAwaiter().GetResult();
            foreach (var outgoing in _outbox.GetConsumingEnumerable())
            {
                using (outgoing.Fd)
                    SeqPacket.Send(daemon.SafeHandle, outgoing.Message, outgoing.Fd is null ? -1 : (int)outgoing.Fd.DangerousGetHandle());
            }
        }
        catch (Exception e) when (_disposed && e is IOException or ObjectDisposedException or SocketException or OperationCanceledException)
        {
        }
        catch (Exception e) when (e is IOException or SocketException)
        {
            _unexpected.Enqueue($"the simulated kernel could not send to the daemon: {e.Message}");
        }
    }

    /// <summary>The daemon's connection (the device), and short ones of its file commands (<c>inuse</c>, <c>cull</c>),
    /// each read on a thread of its own.</summary>
    private void AcceptLoop()
    {
        try
        {
            while (!_disposed)
            {
                var connection = _listener.Accept();
                new Thread(() => Serve(connection)) { IsBackground = true, Name = "sim-cachefiles-conn" }.Start();
            }
        }
        catch (Exception) when (_disposed)
        {
        }
        catch (ObjectDisposedException)
        {
        }
        catch (SocketException)
        {
        }
    }

    private void Serve(Socket connection)
    {
        var buffer = new byte[8192];
        bool device = false;
        try
        {
            while (true)
            {
                int n = connection.Receive(buffer);
                if (n == 0) break;
                string text = Encoding.UTF8.GetString(buffer, 0, n);
                if (!device && text.StartsWith(SimulatedCachefilesDevice.SyscallPrefix, StringComparison.Ordinal))
                {
                    var errno = OnFileCommand(text[SimulatedCachefilesDevice.SyscallPrefix.Length..]);
                    connection.Send(Encoding.ASCII.GetBytes(((int)errno).ToString(CultureInfo.InvariantCulture)));
                    break;
                }
                if (!device)
                {
                    device = true;
                    _connected.TrySetResult(connection);
                }
                OnCommand(text);
            }
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
        }
        finally
        {
            if (!device) connection.Dispose();
        }
    }

    /// <summary><c>inuse NAME</c> / <c>cull NAME</c>, NAME resolved in the writer's working directory as
    /// cachefiles_daemon_inuse/cull do: ENOENT without such a file, EBUSY while an object is open on it (the
    /// kernel holds it), EINVAL outside the cache; a cull deletes the file.</summary>
    private Errno OnFileCommand(string text)
    {
        int newline = text.IndexOf('\n');
        string cwd = newline < 0 ? "" : text[..newline], command = newline < 0 ? text : text[(newline + 1)..];
        int space = command.IndexOf(' ');
        string verb = space < 0 ? command : command[..space], name = space < 0 ? "" : command[(space + 1)..];
        Errno answer;
        lock (_gate)
        {
            string path = Path.GetFullPath(Path.Combine(cwd, name));
            if (verb is not ("inuse" or "cull") || name.Length == 0 || name.Contains('/')
                || !path.StartsWith(CachefilesLayout.VolumesRoot(CacheDir) + "/", StringComparison.Ordinal))
                answer = Errno.EINVAL;
            else if (!File.Exists(path))
                answer = Errno.ENOENT;
            else if (_objects.Any(o => o.CachePath == path && o.State is not (ObjectState.Closed or ObjectState.Refused)))
                answer = Errno.EBUSY;
            else
            {
                if (verb == "cull") File.Delete(path);
                answer = Errno.Success;
            }
        }
        _fileCommands.Enqueue((command, answer));
        return answer;
    }

    private void OnCommand(string text)
    {
        Pending? answered = null;
        lock (_gate)
        {
            if (text.StartsWith(SimulatedCachefilesDevice.ReadNotice, StringComparison.Ordinal))
            {
                if (uint.TryParse(text.AsSpan(SimulatedCachefilesDevice.ReadNotice.Length), NumberStyles.None, CultureInfo.InvariantCulture, out uint read)
                    && _pending.TryGetValue(read, out var pending))
                    OnRead(pending);
                return;
            }

            if (CachefilesCommands.TryParseCopen(text, out uint id, out long size))
            {
                if (!Complete(id, text, out answered)) return;
                if (answered.Opening is { } obj) OnCopen(obj, size, answered.IsReopen);
            }
            else if (text.StartsWith("cread ", StringComparison.Ordinal))
            {
                var parts = text[6..].Split(',');
                if (parts.Length != 2 || !uint.TryParse(parts[0], out uint msg) || !long.TryParse(parts[1], out long objectId))
                {
                    _unexpected.Enqueue(text);
                    return;
                }

                if (_pending.TryGetValue(msg, out var read) && read.Message.Length >= CachefilesMessage.HeaderSize && objectId != read.ObjectIdSent)
                    _unexpected.Enqueue($"{text}: issued on the fd of object {objectId}, the READ was for object {read.ObjectIdSent}");
                if (!Complete(msg, text, out answered)) return;
            }
            else
            {
                _commands.Enqueue(text);
                if (text.StartsWith("dir ", StringComparison.Ordinal)) Volatile.Write(ref _cacheDir, text[4..]);
                if (text == CachefilesCommands.BindOnDemand) _bound.TrySetResult();
                if (text == CachefilesCommands.Restore) OnRestore();
                return;
            }
        }

        answered.Answer.TrySetResult(text);
    }

    /// <summary>The daemon read a request. A READ copy whose object's fd had died by then is one the kernel would
    /// not have handed out as it was: offered again (after a re-open).</summary>
    private void OnRead(Pending pending)
    {
        if (pending.Reading is { } obj && (obj.State != ObjectState.Open || pending.ObjectIdSent != obj.ObjectId || !HasLiveFd(obj)))
        {
            Interlocked.Increment(ref _staleReads);
            DeliverRead(pending);
            return;
        }
        pending.Delivered = true;
    }

    private void OnCopen(SimulatedObject obj, long size, bool reopen)
    {
        if (!reopen) obj.Answer = size;
        if (size >= 0)
        {
            using (var file = File.OpenHandle(obj.CachePath, FileMode.Open, FileAccess.ReadWrite))
                RandomAccess.SetLength(file, size);
            obj.State = ObjectState.Open;
        }
        else
        {
            obj.State = ObjectState.Refused;
        }

        foreach (var (_, held) in _pending.Where(p => p.Value.Held && p.Value.Reading == obj).OrderBy(p => p.Key).ToList())
        {
            if (obj.State == ObjectState.Open) DeliverRead(held);
            else held.Answer.TrySetException(new IOException($"the daemon refused to re-open {obj.CookieKey}: {size}"));
        }
    }

    /// <summary><c>cachefiles_ondemand_restore</c>: every request read and not answered is new again.</summary>
    private void OnRestore()
    {
        Interlocked.Increment(ref _restores);
        _bound.TrySetResult();
        foreach (var (_, pending) in _pending.Where(p => p.Value.Delivered).OrderBy(p => p.Key).ToList())
        {
            Interlocked.Increment(ref _redelivered);
            if (pending.Opening is not null) DeliverOpen(pending, firstTime: false);
            else if (pending.Reading is not null) DeliverRead(pending);
            else if (pending.Message.Length > 0) _outbox.Add(new Outgoing(pending.Message, null));
        }
    }

    private bool Complete(uint id, string text, out Pending pending)
    {
        if (_pending.Remove(id, out pending!))
        {
            _answered[id] = 0;
            return true;
        }

        _unexpected.Enqueue(_answered.ContainsKey(id) ? $"{text}: request {id} was already answered" : $"{text}: no request {id} was sent");
        return false;
    }

    public void Dispose()
    {
        _disposed = true;
        _outbox.CompleteAdding();
        _connected.TrySetCanceled();
        var daemon = _connected.Task.IsCompletedSuccessfully ? _connected.Task.Result : null;
        try { daemon?.Shutdown(SocketShutdown.Both); } catch (SocketException) { } catch (ObjectDisposedException) { }
        daemon?.Dispose();
        _listener.Dispose();
        _acceptor.Join(TimeSpan.FromSeconds(10));
        _sender.Join(TimeSpan.FromSeconds(10));
        foreach (var left in _outbox) left.Fd?.Dispose();
        _outbox.Dispose();
        try { File.Delete(_socketPath); } catch (IOException) { }
        lock (_gate)
        {
            foreach (var (_, pending) in _pending) pending.Answer.TrySetCanceled();
            foreach (var obj in _objects) obj.Probe?.Dispose();
        }
    }
}

/// <summary>Where an object stands for the simulated kernel.</summary>
public enum ObjectState
{
    /// <summary>OPEN sent, no <c>copen</c> yet.</summary>
    Opening,
    Open,
    /// <summary>The daemon answered the OPEN with an error.</summary>
    Refused,
    /// <summary>Its fd was closed with READs pending: a new OPEN is out.</summary>
    Reopening,
    /// <summary>The test sent CLOSE.</summary>
    Closed,
}

/// <summary>An object the simulated kernel opened: its cache file and the daemon's <c>copen</c> answer.</summary>
public sealed class SimulatedObject(uint objectId, string cachePath, string volumeKey, string cookieKey)
{
    /// <summary>The id of its last OPEN (a re-open gives it a new one, as the kernel does).</summary>
    public uint ObjectId { get; internal set; } = objectId;
    public string CachePath { get; } = cachePath;
    public string VolumeKey { get; } = volumeKey;
    public string CookieKey { get; } = cookieKey;

    /// <summary>The first <c>copen</c> value: the object's size, or a negative errno; null before the answer.</summary>
    public long? Answer { get; internal set; }

    public ObjectState State { get; internal set; }

    /// <summary>The lock slot of the anonymous fd last delivered.</summary>
    internal long LockSlot { get; set; }

    /// <summary>The kernel's own descriptor of the cache file, to ask about locks.</summary>
    internal SafeFileHandle? Probe { get; set; }

    public long Size => Answer is >= 0 ? Answer.Value : throw new InvalidOperationException($"object {CookieKey} was refused: {Answer}");
}

/// <param name="Filled">Whether the daemon wrote the whole range (false: the kernel's reader gets EIO).</param>
public sealed record SimulatedRead(byte[] Bytes, bool Filled);
