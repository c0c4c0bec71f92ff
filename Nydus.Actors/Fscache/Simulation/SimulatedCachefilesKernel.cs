using System.Collections.Concurrent;
using System.Net.Sockets;
using System.Text;
using Microsoft.Win32.SafeHandles;
using Nydus.Actors.Interop;

namespace Nydus.Actors.Fscache.Simulation;

/// <summary>
/// A test double for the kernel's side of cachefiles on-demand mode (no cachefiles module on the test machines):
/// listens on a Unix SOCK_SEQPACKET socket for one daemon (<see cref="SimulatedCachefilesDevice"/>), sends it
/// requests in the exact uapi layout, and checks its answers as the kernel would. Each object is a real file under
/// <see cref="CacheDir"/> (the cache file), whose read-write descriptor is sent with the OPEN as the anonymous fd;
/// <c>copen</c> truncates it to the size the daemon gave; a READ is complete when the daemon's <c>cread</c> (the
/// READ_COMPLETE ioctl) names it and the object of the fd it was issued on; the kernel then reads the cache file
/// back, and a range the daemon left as a hole is what the kernel turns into EIO. <c>restore</c> resends every
/// request not answered yet, as the kernel's restore marks them new. Replies to requests already answered, or
/// never sent, are counted (<see cref="UnexpectedReplies"/>).
/// </summary>
public sealed class SimulatedCachefilesKernel : IDisposable
{
    private readonly Socket _listener;
    private readonly string _socketPath;
    private readonly Thread _acceptor;
    private readonly ConcurrentDictionary<uint, Pending> _pending = new();
    private readonly ConcurrentDictionary<uint, byte> _answered = new();
    private readonly ConcurrentDictionary<uint, SimulatedObject> _objects = new();
    private readonly ConcurrentQueue<string> _commands = new();
    private readonly ConcurrentQueue<string> _unexpected = new();
    private readonly TaskCompletionSource _bound = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly object _sendLock = new();
    private Socket? _daemon;
    private int _nextMessage;
    private int _nextObject;
    private int _restores;
    private volatile bool _disposed;

    private sealed record Pending(byte[] Message, SimulatedObject? Opening, TaskCompletionSource<string> Answer);

    private SimulatedCachefilesKernel(string socketPath, string cacheDir)
    {
        _socketPath = socketPath;
        CacheDir = cacheDir;
        Directory.CreateDirectory(cacheDir);
        _listener = new Socket(AddressFamily.Unix, SocketType.Seqpacket, ProtocolType.Unspecified);
        _listener.Bind(new UnixDomainSocketEndPoint(socketPath));
        _listener.Listen(4);
        _acceptor = new Thread(AcceptLoop) { IsBackground = true, Name = "sim-cachefiles" };
        _acceptor.Start();
    }

    /// <summary>Listens on <paramref name="socketPath"/>; cache files go to <paramref name="cacheDir"/>.</summary>
    public static SimulatedCachefilesKernel Listen(string socketPath, string cacheDir) => new(socketPath, cacheDir);

    public string CacheDir { get; }

    /// <summary>Every command the daemon wrote, in order (<c>dir</c>, <c>tag</c>, <c>bind ondemand</c>, <c>restore</c>).</summary>
    public IReadOnlyList<string> Commands => [.. _commands];

    /// <summary>Answers for requests already answered or never sent, and <c>cread</c> on the wrong object's fd.</summary>
    public IReadOnlyList<string> UnexpectedReplies => [.. _unexpected];

    public int Restores => Volatile.Read(ref _restores);

    /// <summary>Requests sent and not answered yet.</summary>
    public int InFlight => _pending.Count;

    /// <summary>Completes once the daemon wrote <c>bind ondemand</c>.</summary>
    public Task Bound => _bound.Task;

    /// <summary>Sends an OPEN for <paramref name="cookieKey"/> in volume <paramref name="volumeKey"/> without waiting.</summary>
    public (SimulatedObject Object, Task<string> Answer) StartOpen(string volumeKey, string cookieKey)
    {
        uint objectId = (uint)Interlocked.Increment(ref _nextObject);
        var obj = new SimulatedObject(objectId, Path.Combine(CacheDir, $"object-{objectId}"), volumeKey, cookieKey);
        File.WriteAllBytes(obj.CachePath, []);
        uint id = NextMessageId();
        var message = CachefilesMessage.EncodeOpen(id, objectId, volumeKey, cookieKey, fd: -1);
        return (obj, Send(id, message, obj));
    }

    /// <summary>OPEN and wait for the <c>copen</c>: the object with its size, or with the errno the daemon refused it with.</summary>
    public async Task<SimulatedObject> OpenAsync(string volumeKey, string cookieKey, TimeSpan timeout)
    {
        var (obj, answer) = StartOpen(volumeKey, cookieKey);
        await answer.WaitAsync(timeout);
        return obj;
    }

    /// <summary>Sends a READ of [<paramref name="offset"/>, +<paramref name="length"/>) without waiting.</summary>
    public Task<string> StartRead(SimulatedObject obj, long offset, long length)
    {
        uint id = NextMessageId();
        return Send(id, CachefilesMessage.EncodeRead(id, obj.ObjectId, (ulong)offset, (ulong)length), null);
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

        const int SeekHole = 4;
        long hole = bytes.Length == 0 ? offset : Libc.LSeek(file, offset, SeekHole);
        return new SimulatedRead(bytes, bytes.Length > 0 && hole >= end);
    }

    /// <summary>CLOSE: no answer is expected; the daemon drops the object and its fd.</summary>
    public void Close(SimulatedObject obj)
    {
        _objects.TryRemove(obj.ObjectId, out _);
        uint id = NextMessageId();
        SendRaw(CachefilesMessage.EncodeClose(id, obj.ObjectId));
    }

    /// <summary>Sends any bytes as one message (malformed requests), with a descriptor when <paramref name="fd"/> is given.</summary>
    public void SendRaw(byte[] message, SafeFileHandle? fd = null)
    {
        var daemon = _daemon ?? throw new InvalidOperationException("no daemon is connected");
        lock (_sendLock)
        {
            SeqPacket.Send(daemon.SafeHandle, message, fd is null ? -1 : (int)fd.DangerousGetHandle());
        }
    }

    /// <summary>A message id for <see cref="SendRaw"/> callers that then wait with <see cref="Expect"/>.</summary>
    public uint NextMessageId() => (uint)Interlocked.Increment(ref _nextMessage);

    /// <summary>Registers a request sent with <see cref="SendRaw"/>, to wait for its answer.</summary>
    public Task<string> Expect(uint messageId)
    {
        var pending = new Pending([], null, new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously));
        _pending[messageId] = pending;
        return pending.Answer.Task;
    }

    private Task<string> Send(uint id, byte[] message, SimulatedObject? opening)
    {
        var pending = new Pending(message, opening, new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously));
        _pending[id] = pending;
        Deliver(pending);
        return pending.Answer.Task;
    }

    private void Deliver(Pending pending)
    {
        if (pending.Opening is { } obj)
        {
            // A fresh anonymous fd each time the OPEN is (re)sent: the daemon owns and closes what it receives.
            using var fd = File.OpenHandle(obj.CachePath, FileMode.Open, FileAccess.ReadWrite);
            SendRaw(pending.Message, fd);
        }
        else
        {
            SendRaw(pending.Message);
        }
    }

    private void AcceptLoop()
    {
        var buffer = new byte[4096];
        try
        {
            while (!_disposed)
            {
                var daemon = _listener.Accept();
                _daemon = daemon;
                while (true)
                {
                    int n;
                    try
                    {
                        n = daemon.Receive(buffer);
                    }
                    catch (SocketException)
                    {
                        break;
                    }

                    if (n == 0) break;
                    OnCommand(Encoding.UTF8.GetString(buffer, 0, n));
                }
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

    private void OnCommand(string text)
    {
        if (CachefilesCommands.TryParseCopen(text, out uint id, out long size))
        {
            if (!Complete(id, text, out var pending)) return;
            if (pending.Opening is { } obj)
            {
                obj.Answer = size;
                if (size >= 0)
                {
                    using var file = File.OpenHandle(obj.CachePath, FileMode.Open, FileAccess.ReadWrite);
                    RandomAccess.SetLength(file, size);
                    _objects[obj.ObjectId] = obj;
                }
            }

            pending.Answer.TrySetResult(text);
            return;
        }

        if (text.StartsWith("cread ", StringComparison.Ordinal))
        {
            var parts = text[6..].Split(',');
            if (parts.Length != 2 || !uint.TryParse(parts[0], out uint msg) || !long.TryParse(parts[1], out long objectId))
            {
                _unexpected.Enqueue(text);
                return;
            }

            if (!_pending.TryGetValue(msg, out var read)) { Complete(msg, text, out _); return; }
            if (read.Message.Length >= CachefilesMessage.HeaderSize
                && System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(read.Message.AsSpan(12)) is var expected && objectId != expected)
                _unexpected.Enqueue($"{text}: issued on the fd of object {objectId}, the READ was for object {expected}");
            if (Complete(msg, text, out var pending)) pending.Answer.TrySetResult(text);
            return;
        }

        _commands.Enqueue(text);
        if (text == CachefilesCommands.BindOnDemand) _bound.TrySetResult();
        if (text == CachefilesCommands.Restore)
        {
            Interlocked.Increment(ref _restores);
            _bound.TrySetResult();
            foreach (var (_, pending) in _pending.OrderBy(p => p.Key))
                if (pending.Message.Length > 0) Deliver(pending);
        }
    }

    private bool Complete(uint id, string text, out Pending pending)
    {
        if (_pending.TryRemove(id, out pending!))
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
        try { _daemon?.Shutdown(SocketShutdown.Both); } catch (SocketException) { } catch (ObjectDisposedException) { }
        _daemon?.Dispose();
        _listener.Dispose();
        _acceptor.Join(TimeSpan.FromSeconds(10));
        try { File.Delete(_socketPath); } catch (IOException) { }
        foreach (var (_, pending) in _pending) pending.Answer.TrySetCanceled();
    }
}

/// <summary>An object the simulated kernel opened: its cache file and the daemon's <c>copen</c> answer.</summary>
public sealed class SimulatedObject(uint objectId, string cachePath, string volumeKey, string cookieKey)
{
    public uint ObjectId { get; } = objectId;
    public string CachePath { get; } = cachePath;
    public string VolumeKey { get; } = volumeKey;
    public string CookieKey { get; } = cookieKey;

    /// <summary>The <c>copen</c> value: the object's size, or a negative errno; null before the answer.</summary>
    public long? Answer { get; internal set; }

    public long Size => Answer is >= 0 ? Answer.Value : throw new InvalidOperationException($"object {CookieKey} was refused: {Answer}");
}

/// <param name="Filled">Whether the daemon wrote the whole range (false: the kernel's reader gets EIO).</param>
public sealed record SimulatedRead(byte[] Bytes, bool Filled);
