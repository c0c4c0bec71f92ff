using System.Buffers.Binary;
using System.Net.Sockets;
using Microsoft.Win32.SafeHandles;
using Nydus.Actors.Interop;
using Nydus.Actors.VirtioFs;
using Xunit;

namespace Nydus.Actors.Tests.VirtioFs;

/// <summary>
/// A vhost-user front-end in the test process, in qemu's place: it speaks the protocol to a backend's socket, gives it
/// "guest memory" (a file in /dev/shm that both sides map), its own kick and call eventfds, and lays FUSE requests out
/// in descriptor chains it writes itself, so tests can also hand the backend what a broken or hostile guest would.
/// Guest-physical addresses start at <see cref="GuestBase"/> (not 0, so that a translation bug shows).
/// Queue q's rings live at GuestBase + q * 0x10000; buffers above <see cref="BufferArea"/>.
/// </summary>
internal sealed unsafe class VhostUserTestFrontend : IDisposable
{
    public const ulong GuestBase = 0x4000_0000;
    public const ulong UserBase = 0x7f00_0000_0000;
    public const int MemorySize = 4 << 20;
    public const ushort QueueSize = 16;
    public const ulong BufferArea = GuestBase + 0x10_0000;

    private readonly Socket _socket;
    private readonly SafeFileHandle _socketHandle;
    private readonly FileStream _memoryFile;
    private readonly nint _memory;
    private readonly List<(SafeFileHandle Kick, SafeFileHandle Call)> _queues = [];
    private readonly ushort[] _nextAvail = new ushort[8];
    private readonly ushort[] _seenUsed = new ushort[8];
    private readonly ushort[] _base = new ushort[8];
    private ulong _nextBuffer = BufferArea;

    /// <summary>How long <see cref="Call"/> waits for the backend's answer.</summary>
    private static readonly TimeSpan CallTimeout = TimeSpan.FromSeconds(20);

    public VhostUserTestFrontend(string socketPath, string memoryPath)
    {
        _memoryFile = new FileStream(memoryPath, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.ReadWrite, 1, FileOptions.DeleteOnClose);
        _memoryFile.SetLength(MemorySize);
        _memory = Libc.MapShared(_memoryFile.SafeFileHandle, MemorySize, 0);
        if (_memory == 0) throw new IOException($"mmap failed: {Libc.LastErrno}");
        _socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        _socket.Connect(new UnixDomainSocketEndPoint(socketPath));
        _socket.ReceiveTimeout = 10_000;
        _socketHandle = new SafeFileHandle(_socket.Handle, ownsHandle: false);
    }

    public string MemoryPath => _memoryFile.Name;

    /// <summary>The negotiation qemu 7.2 does for vhost-user-fs-pci, then <paramref name="queues"/> queues started.</summary>
    public void Start(int queues)
    {
        ulong features = Request(VhostUserRequest.GetFeatures);
        Send(VhostUserRequest.SetFeatures, U64(features & ((1UL << 32) | (1UL << 30))));
        ulong protocol = Request(VhostUserRequest.GetProtocolFeatures);
        Send(VhostUserRequest.SetProtocolFeatures, U64(protocol & 1));
        ulong queueNum = Request(VhostUserRequest.GetQueueNum);
        if (queueNum < (ulong)queues) throw new InvalidOperationException($"backend offers {queueNum} queues");
        Send(VhostUserRequest.SetOwner, []);
        SetMemTable();
        for (int q = 0; q < queues; q++) StartQueue(q);
    }

    public void SetMemTable()
    {
        var table = new byte[8 + 32];
        BinaryPrimitives.WriteUInt32LittleEndian(table, 1);
        BinaryPrimitives.WriteUInt64LittleEndian(table.AsSpan(8), GuestBase);
        BinaryPrimitives.WriteUInt64LittleEndian(table.AsSpan(16), MemorySize);
        BinaryPrimitives.WriteUInt64LittleEndian(table.AsSpan(24), UserBase);
        BinaryPrimitives.WriteUInt64LittleEndian(table.AsSpan(32), 0);
        Send(VhostUserRequest.SetMemTable, table, _memoryFile.SafeFileHandle);
    }

    public void StartQueue(int q)
    {
        Send(VhostUserRequest.SetVringNum, State(q, QueueSize));
        Send(VhostUserRequest.SetVringBase, State(q, _base[q]));
        var addr = new byte[40];
        BinaryPrimitives.WriteUInt32LittleEndian(addr, (uint)q);
        BinaryPrimitives.WriteUInt64LittleEndian(addr.AsSpan(8), UserBase + Desc(q) - GuestBase);
        BinaryPrimitives.WriteUInt64LittleEndian(addr.AsSpan(16), UserBase + Used(q) - GuestBase);
        BinaryPrimitives.WriteUInt64LittleEndian(addr.AsSpan(24), UserBase + Avail(q) - GuestBase);
        Send(VhostUserRequest.SetVringAddr, addr);
        if (_queues.Count <= q)
        {
            _queues.Add((NewEventFd(), NewEventFd()));
            Send(VhostUserRequest.SetVringCall, U64((ulong)q), _queues[q].Call);
        }
        Send(VhostUserRequest.SetVringKick, U64((ulong)q), _queues[q].Kick);
        Send(VhostUserRequest.SetVringEnable, State(q, 1));
    }

    /// <summary>GET_VRING_BASE: stops the queue in the backend; returns where it stopped in the available ring.</summary>
    public uint StopQueue(int q)
    {
        Send(VhostUserRequest.GetVringBase, State(q, 0), expectReply: true, out byte[] reply);
        // As qemu: the queue starts again where the backend stopped.
        _base[q] = (ushort)BinaryPrimitives.ReadUInt32LittleEndian(reply.AsSpan(4));
        return _base[q];
    }

    /// <summary>
    /// A device reset as a guest driver does it (RESET_OWNER, the request qemu sends when the device is reset), then
    /// the rings zeroed as the driver re-initialises them, fresh kick/call eventfds and the whole set-up again.
    /// </summary>
    public void ResetAndRestart(int queues)
    {
        Send(VhostUserRequest.ResetOwner, []);
        // RESET_OWNER has no reply; the backend handles requests in order, so this one's reply means the reset is done
        // (its queue workers stopped) before the rings are touched.
        Request(VhostUserRequest.GetFeatures);
        foreach (var (kick, call) in _queues)
        {
            kick.Dispose();
            call.Dispose();
        }

        _queues.Clear();
        for (int q = 0; q < _nextAvail.Length; q++)
        {
            if (Desc(q) + 0x3000 <= BufferArea) Guest(Desc(q), 0x3000).Clear();
            _nextAvail[q] = 0;
            _seenUsed[q] = 0;
            _base[q] = 0;
        }

        Start(queues);
    }

    /// <summary>Copies <paramref name="data"/> into a fresh buffer of guest memory; returns its guest address.</summary>
    public ulong Put(ReadOnlySpan<byte> data, int room = 0)
    {
        ulong address = _nextBuffer;
        _nextBuffer += (ulong)((Math.Max(data.Length, room) + 63) & ~63);
        if (_nextBuffer > GuestBase + MemorySize) throw new InvalidOperationException("test guest memory exhausted");
        data.CopyTo(Guest(address, data.Length));
        return address;
    }

    public Span<byte> Guest(ulong address, int length) => new((byte*)_memory + (long)(address - GuestBase), length);

    /// <summary>Writes descriptor <paramref name="index"/> of queue <paramref name="q"/> (or of an indirect table at <paramref name="table"/>).</summary>
    public void WriteDescriptor(int q, int index, ulong address, uint length, ushort flags, ushort next, ulong? table = null)
    {
        Span<byte> d = Guest((table ?? Desc(q)) + 16 * (ulong)index, 16);
        BinaryPrimitives.WriteUInt64LittleEndian(d, address);
        BinaryPrimitives.WriteUInt32LittleEndian(d[8..], length);
        BinaryPrimitives.WriteUInt16LittleEndian(d[12..], flags);
        BinaryPrimitives.WriteUInt16LittleEndian(d[14..], next);
    }

    /// <summary>Makes the chain at <paramref name="head"/> available and kicks.</summary>
    public void Publish(int q, ushort head)
    {
        BinaryPrimitives.WriteUInt16LittleEndian(Guest(Avail(q) + 4 + 2 * (ulong)(_nextAvail[q] % QueueSize), 2), head);
        _nextAvail[q]++;
        Volatile.Write(ref *(ushort*)((byte*)_memory + (long)(Avail(q) + 2 - GuestBase)), _nextAvail[q]);
        Kick(q);
    }

    /// <summary>Sets the available index directly (a guest lying about how much it made available).</summary>
    public void SetAvailIndex(int q, ushort index)
    {
        _nextAvail[q] = index;
        Volatile.Write(ref *(ushort*)((byte*)_memory + (long)(Avail(q) + 2 - GuestBase)), index);
        Kick(q);
    }

    /// <summary>One request in a two-descriptor chain (or one indirect table of two) at head 0; returns the error and body.</summary>
    public (int Error, byte[] Body) Call(int q, byte[] request, int replyRoom, bool indirect = false)
    {
        ulong at = Put(request);
        ulong reply = Put([], FuseWire.OutHeaderSize + replyRoom);
        if (indirect)
        {
            ulong table = Put(new byte[32]);
            WriteDescriptor(q, 0, at, (uint)request.Length, SplitVirtqueue.DescFlagNext, 1, table);
            WriteDescriptor(q, 1, reply, (uint)(FuseWire.OutHeaderSize + replyRoom), SplitVirtqueue.DescFlagWrite, 0, table);
            WriteDescriptor(q, 0, table, 32, SplitVirtqueue.DescFlagIndirect, 0);
        }
        else
        {
            WriteDescriptor(q, 0, at, (uint)request.Length, SplitVirtqueue.DescFlagNext, 1);
            WriteDescriptor(q, 1, reply, (uint)(FuseWire.OutHeaderSize + replyRoom), SplitVirtqueue.DescFlagWrite, 0);
        }

        Publish(q, 0);
        var used = WaitUsed(q, 1, CallTimeout);
        Assert.Equal(0u, used[0].Head);
        var (length, error, _) = FuseWire.OutHeader(Guest(reply, 16));
        Assert.Equal(length, used[0].Length);
        return (error, Guest(reply + FuseWire.OutHeaderSize, replyRoom).ToArray());
    }

    public void Kick(int q) => Libc.SignalEvent(_queues[q].Kick);

    /// <summary>Waits (bounded) until the backend has used <paramref name="count"/> more chains; returns them (head, length).</summary>
    public List<(uint Head, uint Length)> WaitUsed(int q, int count, TimeSpan timeout)
    {
        var used = new List<(uint, uint)>();
        DateTime deadline = DateTime.UtcNow + timeout;
        while (used.Count < count)
        {
            ushort index = Volatile.Read(ref *(ushort*)((byte*)_memory + (long)(Used(q) + 2 - GuestBase)));
            while (_seenUsed[q] != index && used.Count < count)
            {
                Span<byte> element = Guest(Used(q) + 4 + 8 * (ulong)(_seenUsed[q] % QueueSize), 8);
                used.Add((BinaryPrimitives.ReadUInt32LittleEndian(element), BinaryPrimitives.ReadUInt32LittleEndian(element[4..])));
                _seenUsed[q]++;
            }

            if (used.Count >= count) break;
            int left = (int)(deadline - DateTime.UtcNow).TotalMilliseconds;
            if (left <= 0) throw new TimeoutException($"queue {q}: {used.Count} of {count} chains used within {timeout}");
            WaitReadable(_queues[q].Call, Math.Min(left, 200));
            Libc.ConsumeEvent(_queues[q].Call);
        }

        return used;
    }

    public ushort UsedIndex(int q) => Volatile.Read(ref *(ushort*)((byte*)_memory + (long)(Used(q) + 2 - GuestBase)));

    public static ulong Desc(int q) => GuestBase + (ulong)q * 0x10000;

    public static ulong Avail(int q) => Desc(q) + 0x1000;

    public static ulong Used(int q) => Desc(q) + 0x2000;

    /// <summary>Sends a raw message (any request number, any flags) and no descriptors.</summary>
    public void SendRaw(uint request, uint flags, ReadOnlySpan<byte> payload)
    {
        var message = new byte[12 + payload.Length];
        BinaryPrimitives.WriteUInt32LittleEndian(message, request);
        BinaryPrimitives.WriteUInt32LittleEndian(message.AsSpan(4), flags);
        BinaryPrimitives.WriteUInt32LittleEndian(message.AsSpan(8), (uint)payload.Length);
        payload.CopyTo(message.AsSpan(12));
        _socket.Send(message);
    }

    /// <summary>True when the backend has closed the connection (read returns end of file within the timeout).</summary>
    public bool IsClosedByBackend(TimeSpan timeout)
    {
        _socket.ReceiveTimeout = (int)timeout.TotalMilliseconds;
        try
        {
            return _socket.Receive(new byte[64]) == 0;
        }
        catch (SocketException e)
        {
            // Closed with our unread bytes in its buffer, the kernel resets the connection instead.
            return e.SocketErrorCode == SocketError.ConnectionReset;
        }
    }

    public void Send(VhostUserRequest request, byte[] payload, SafeFileHandle? fd = null) => Send(request, payload, false, out _, fd);

    private ulong Request(VhostUserRequest request)
    {
        Send(request, [], expectReply: true, out byte[] reply);
        return BinaryPrimitives.ReadUInt64LittleEndian(reply);
    }

    private void Send(VhostUserRequest request, byte[] payload, bool expectReply, out byte[] reply, SafeFileHandle? fd = null)
    {
        var message = new byte[12 + payload.Length];
        BinaryPrimitives.WriteUInt32LittleEndian(message, (uint)request);
        BinaryPrimitives.WriteUInt32LittleEndian(message.AsSpan(4), VhostUserProtocol.FlagVersion);
        BinaryPrimitives.WriteUInt32LittleEndian(message.AsSpan(8), (uint)payload.Length);
        payload.CopyTo(message, 12);
        SendWithDescriptor(message, fd);
        reply = [];
        if (!expectReply) return;
        var header = new byte[12];
        ReceiveExactly(header);
        if (BinaryPrimitives.ReadUInt32LittleEndian(header) != (uint)request || (BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(4)) & VhostUserProtocol.FlagReply) == 0)
            throw new InvalidOperationException($"unexpected reply header to {request}");
        reply = new byte[BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(8))];
        ReceiveExactly(reply);
    }

    private void ReceiveExactly(byte[] buffer)
    {
        int at = 0;
        while (at < buffer.Length)
        {
            int n = _socket.Receive(buffer, at, buffer.Length - at, SocketFlags.None);
            if (n == 0) throw new IOException("the backend closed the connection");
            at += n;
        }
    }

    private void SendWithDescriptor(byte[] message, SafeFileHandle? fd)
    {
        fixed (byte* data = message)
        {
            var vector = new Libc.IoVec { Base = data, Length = (nuint)message.Length };
            byte* control = stackalloc byte[24];
            new Span<byte>(control, 24).Clear();
            var header = new Libc.MessageHeader { Vectors = &vector, VectorCount = 1 };
            bool added = false;
            try
            {
                if (fd is not null)
                {
                    fd.DangerousAddRef(ref added);
                    var cmsg = (Libc.ControlMessageHeader*)control;
                    cmsg->Length = (nuint)(sizeof(Libc.ControlMessageHeader) + sizeof(int));
                    cmsg->Level = Libc.SOL_SOCKET;
                    cmsg->Type = Libc.SCM_RIGHTS;
                    *(int*)(control + sizeof(Libc.ControlMessageHeader)) = (int)fd.DangerousGetHandle();
                    header.Control = control;
                    header.ControlLength = 24;
                }

                if (Libc.SendMessage((int)_socket.Handle, &header, Libc.MSG_NOSIGNAL) != message.Length)
                    throw new IOException($"sendmsg failed: {Libc.LastErrno}");
            }
            finally
            {
                if (added) fd!.DangerousRelease();
            }
        }
    }

    private static SafeFileHandle NewEventFd() =>
        Libc.Own(Libc.EventFd(0, Libc.EFD_CLOEXEC | Libc.EFD_NONBLOCK)) ?? throw new IOException($"eventfd failed: {Libc.LastErrno}");

    private static void WaitReadable(SafeFileHandle fd, int milliseconds)
    {
        Libc.PollFd poll = new() { Fd = (int)fd.DangerousGetHandle(), Events = Libc.POLLIN };
        Libc.Poll(&poll, 1, milliseconds);
    }

    private static byte[] State(int q, uint value)
    {
        var state = new byte[8];
        BinaryPrimitives.WriteUInt32LittleEndian(state, (uint)q);
        BinaryPrimitives.WriteUInt32LittleEndian(state.AsSpan(4), value);
        return state;
    }

    private static byte[] U64(ulong value)
    {
        var bytes = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, value);
        return bytes;
    }

    public void Dispose()
    {
        _socket.Dispose();
        foreach (var (kick, call) in _queues)
        {
            kick.Dispose();
            call.Dispose();
        }

        Libc.UnmapMemory(_memory, MemorySize);
        _memoryFile.Dispose();
    }
}
