using System.Buffers.Binary;
using Microsoft.Win32.SafeHandles;
using Nydus.Actors.Fuse.Ops;
using Serilog;

namespace Nydus.Actors.VirtioFs;

/// <summary>
/// The device state of one vhost-user-fs connection and the answer to each front-end request: features, the guest
/// memory table, and per queue its size, ring addresses, base, kick/call eventfds and worker. Queue 0 is virtio-fs's
/// hiprio queue (FORGET), the others request queues; all are served alike by the one <see cref="FuseDispatcher"/>.
/// A queue runs (has a worker) once it has memory, addresses and a kick fd and is enabled; GET_VRING_BASE,
/// a new memory table, a reset or the end of the connection stop it. Called on the connection's thread only.
/// </summary>
public sealed class VhostUserFsBackend : IDisposable
{
    private static readonly ILogger Log = Serilog.Log.ForContext<VhostUserFsBackend>();

    private readonly FuseDispatcher _dispatcher;
    private readonly Vring[] _vrings;
    private GuestMemory? _memory;
    private ulong _features;
    private ulong _protocolFeatures;

    /// <param name="dispatcher">The FUSE dispatcher over the daemon's VFS (one per connection: INIT is per connection).</param>
    /// <param name="requestQueues">Request queues offered (the frontend's num-request-queues must not exceed it).</param>
    public VhostUserFsBackend(FuseDispatcher dispatcher, int requestQueues)
    {
        if (requestQueues is < 1 or > 64) throw new ArgumentOutOfRangeException(nameof(requestQueues), requestQueues, "1..64 request queues");
        _dispatcher = dispatcher;
        _vrings = Enumerable.Range(0, requestQueues + 1).Select(_ => new Vring()).ToArray();
    }

    public VirtioFsCounters Counters { get; } = new();

    /// <summary>Queues with a running worker.</summary>
    public int RunningQueues => _vrings.Count(v => v.Worker is not null);

    /// <summary>Handles one request; returns the reply payload, or null when the request takes none.</summary>
    /// <param name="descriptors">The descriptors that came with it; taken over (closed here unless kept).</param>
    /// <exception cref="VhostUserException">The request is malformed or not supported: the connection ends.</exception>
    public byte[]? Handle(VhostUserRequest request, ReadOnlySpan<byte> payload, List<SafeFileHandle> descriptors)
    {
        try
        {
            return HandleCore(request, payload, descriptors);
        }
        finally
        {
            // Whatever was not adopted (a reply-only request that came with fds, extra fds) is closed.
            foreach (SafeFileHandle fd in descriptors) fd.Dispose();
            descriptors.Clear();
        }
    }

    /// <summary>True when the frontend asked for an acknowledgement of a request that has no reply of its own.</summary>
    public bool WantsAck(uint flags, VhostUserRequest request) =>
        (flags & VhostUserProtocol.FlagNeedReply) != 0
        && (_protocolFeatures & (1UL << VhostUserProtocol.ProtocolFeatureReplyAck)) != 0
        && request is not (VhostUserRequest.GetFeatures or VhostUserRequest.GetProtocolFeatures or VhostUserRequest.GetQueueNum
            or VhostUserRequest.GetVringBase or VhostUserRequest.GetConfig or VhostUserRequest.GetMaxMemSlots);

    private byte[]? HandleCore(VhostUserRequest request, ReadOnlySpan<byte> payload, List<SafeFileHandle> descriptors)
    {
        switch (request)
        {
            case VhostUserRequest.GetFeatures:
                return U64(VhostUserProtocol.OfferedFeatures);
            case VhostUserRequest.SetFeatures:
                ulong features = ReadU64(payload, request);
                if ((features & ~VhostUserProtocol.OfferedFeatures) != 0)
                    throw new VhostUserException($"SET_FEATURES 0x{features:x} asks for features not offered (0x{VhostUserProtocol.OfferedFeatures:x})");
                _features = features;
                return null;
            case VhostUserRequest.GetProtocolFeatures:
                return U64(VhostUserProtocol.OfferedProtocolFeatures);
            case VhostUserRequest.SetProtocolFeatures:
                _protocolFeatures = ReadU64(payload, request) & VhostUserProtocol.OfferedProtocolFeatures;
                return null;
            case VhostUserRequest.GetQueueNum:
                return U64((ulong)_vrings.Length);
            case VhostUserRequest.SetOwner:
                return null;
            case VhostUserRequest.ResetOwner:
            case VhostUserRequest.ResetDevice:
                Reset();
                return null;
            case VhostUserRequest.SetMemTable:
                SetMemTable(payload, descriptors);
                return null;
            case VhostUserRequest.SetVringNum:
            {
                (Vring vring, uint num) = ReadState(payload, request);
                if (num == 0 || num > SplitVirtqueue.MaxSize || (num & (num - 1)) != 0)
                    throw new VhostUserException($"SET_VRING_NUM {num}: not a power of two up to {SplitVirtqueue.MaxSize}");
                vring.Size = (ushort)num;
                return null;
            }
            case VhostUserRequest.SetVringBase:
            {
                (Vring vring, uint num) = ReadState(payload, request);
                vring.Base = (ushort)num;
                return null;
            }
            case VhostUserRequest.SetVringAddr:
                SetVringAddr(payload);
                return null;
            case VhostUserRequest.GetVringBase:
            {
                int index = ReadIndex(payload, request);
                Vring vring = _vrings[index];
                StopWorker(vring);
                // The ring is stopped: it starts again with a new kick fd.
                vring.Kick?.Dispose();
                vring.Kick = null;
                var reply = new byte[8];
                BinaryPrimitives.WriteUInt32LittleEndian(reply, (uint)index);
                BinaryPrimitives.WriteUInt32LittleEndian(reply.AsSpan(4), vring.Base);
                return reply;
            }
            case VhostUserRequest.SetVringKick:
            {
                (Vring vring, SafeFileHandle? fd) = TakeVringFd(payload, descriptors, request);
                if (fd is null) throw new VhostUserException("SET_VRING_KICK without a descriptor: polling mode is not supported");
                StopWorker(vring);
                vring.Kick?.Dispose();
                vring.Kick = fd;
                StartIfReady(vring);
                return null;
            }
            case VhostUserRequest.SetVringCall:
            {
                (Vring vring, SafeFileHandle? fd) = TakeVringFd(payload, descriptors, request);
                vring.Call.Replace(fd);
                return null;
            }
            case VhostUserRequest.SetVringErr:
                TakeVringFd(payload, descriptors, request).Fd?.Dispose();
                return null;
            case VhostUserRequest.SetVringEnable:
            {
                (Vring vring, uint enable) = ReadState(payload, request);
                vring.Enabled = enable != 0;
                if (vring.Enabled) StartIfReady(vring);
                else StopWorker(vring);
                return null;
            }
            default:
                throw new VhostUserException($"vhost-user request {(uint)request} is not supported by this backend");
        }
    }

    private void SetMemTable(ReadOnlySpan<byte> payload, List<SafeFileHandle> descriptors)
    {
        if (payload.Length < 8) throw new VhostUserException("SET_MEM_TABLE: short payload");
        uint count = BinaryPrimitives.ReadUInt32LittleEndian(payload);
        if (count == 0 || count > Interop.Libc.MaxMessageDescriptors || payload.Length < 8 + 32 * count)
            throw new VhostUserException($"SET_MEM_TABLE: {count} regions in {payload.Length} bytes");
        var specs = new GuestMemoryRegionSpec[count];
        for (int i = 0; i < count; i++)
        {
            ReadOnlySpan<byte> r = payload.Slice(8 + 32 * i, 32);
            specs[i] = new GuestMemoryRegionSpec(BinaryPrimitives.ReadUInt64LittleEndian(r), BinaryPrimitives.ReadUInt64LittleEndian(r[8..]),
                BinaryPrimitives.ReadUInt64LittleEndian(r[16..]), BinaryPrimitives.ReadUInt64LittleEndian(r[24..]));
        }

        GuestMemory memory = GuestMemory.Map(specs, descriptors);
        // Workers read the old table until they stop; it is unmapped only then.
        var running = _vrings.Where(v => v.Worker is not null).ToArray();
        foreach (Vring vring in running) StopWorker(vring);
        _memory?.Dispose();
        _memory = memory;
        Log.Debug("vhost-user: memory table of {Regions} regions mapped", count);
        foreach (Vring vring in _vrings) StartIfReady(vring);
    }

    private void SetVringAddr(ReadOnlySpan<byte> payload)
    {
        if (payload.Length < 40) throw new VhostUserException("SET_VRING_ADDR: short payload");
        int index = ReadIndex(payload, VhostUserRequest.SetVringAddr);
        Vring vring = _vrings[index];
        StopWorker(vring);
        vring.DescUser = BinaryPrimitives.ReadUInt64LittleEndian(payload[8..]);
        vring.UsedUser = BinaryPrimitives.ReadUInt64LittleEndian(payload[16..]);
        vring.AvailUser = BinaryPrimitives.ReadUInt64LittleEndian(payload[24..]);
        vring.HasAddresses = true;
        StartIfReady(vring);
    }

    private void StartIfReady(Vring vring)
    {
        // Without protocol features a ring is enabled when it starts; with them, only after SET_VRING_ENABLE.
        bool enabled = vring.Enabled || (_features & (1UL << VhostUserProtocol.FeatureProtocolFeatures)) == 0;
        if (vring.Worker is not null || _memory is null || vring.Kick is null || !vring.HasAddresses || !enabled || vring.Size == 0) return;
        if (!_memory.TryUserToGuest(vring.DescUser, out ulong desc) || !_memory.TryUserToGuest(vring.AvailUser, out ulong avail)
            || !_memory.TryUserToGuest(vring.UsedUser, out ulong used))
            throw new VhostUserException($"queue {Array.IndexOf(_vrings, vring)}: ring addresses are not in the memory table");
        var queue = new SplitVirtqueue(_memory, vring.Size, desc, avail, used, vring.Base);
        int index = Array.IndexOf(_vrings, vring);
        vring.Worker = new VirtioFsQueueWorker(index, queue, _memory, vring.Kick, vring.Call, _dispatcher, Counters);
        vring.Worker.Start();
        Log.Debug("virtio-fs queue {Queue} started (size {Size}, base {Base})", index, vring.Size, vring.Base);
    }

    private static void StopWorker(Vring vring)
    {
        if (vring.Worker is not { } worker) return;
        if (!worker.Stop())
            throw new VhostUserException("a queue worker did not stop; the connection is dropped");
        vring.Base = worker.NextAvail;
        vring.Worker = null;
    }

    private void Reset()
    {
        foreach (Vring vring in _vrings)
        {
            StopWorker(vring);
            vring.Kick?.Dispose();
            vring.Kick = null;
            vring.Call.Replace(null);
            vring.Enabled = false;
            vring.HasAddresses = false;
            vring.Base = 0;
            vring.Size = 0;
        }

        _features = 0;
    }

    /// <summary>Stops every worker, then closes every descriptor and unmaps the guest memory.</summary>
    public void Dispose()
    {
        List<Exception> failures = [];
        foreach (Vring vring in _vrings)
        {
            try { StopWorker(vring); }
            catch (VhostUserException e) { failures.Add(e); }
        }

        foreach (Vring vring in _vrings)
        {
            vring.Kick?.Dispose();
            vring.Call.Dispose();
        }

        // A worker that would not stop may still read the memory: leave it mapped rather than fault.
        if (failures.Count == 0) _memory?.Dispose();
        else Log.Error("virtio-fs: {Count} queue workers did not stop; guest memory left mapped", failures.Count);
        _memory = null;
    }

    private int ReadIndex(ReadOnlySpan<byte> payload, VhostUserRequest request)
    {
        if (payload.Length < 4) throw new VhostUserException($"{request}: short payload");
        uint index = BinaryPrimitives.ReadUInt32LittleEndian(payload);
        if (index >= _vrings.Length) throw new VhostUserException($"{request}: queue {index} does not exist ({_vrings.Length} queues)");
        return (int)index;
    }

    private (Vring Vring, uint Value) ReadState(ReadOnlySpan<byte> payload, VhostUserRequest request)
    {
        if (payload.Length < 8) throw new VhostUserException($"{request}: short payload");
        return (_vrings[ReadIndex(payload, request)], BinaryPrimitives.ReadUInt32LittleEndian(payload[4..]));
    }

    private (Vring Vring, SafeFileHandle? Fd) TakeVringFd(ReadOnlySpan<byte> payload, List<SafeFileHandle> descriptors, VhostUserRequest request)
    {
        ulong value = ReadU64(payload, request);
        ulong index = value & VhostUserProtocol.VringIndexMask;
        if (index >= (ulong)_vrings.Length) throw new VhostUserException($"{request}: queue {index} does not exist");
        if ((value & VhostUserProtocol.VringInvalidFd) != 0) return (_vrings[index], null);
        if (descriptors.Count != 1) throw new VhostUserException($"{request}: expected one descriptor, got {descriptors.Count}");
        SafeFileHandle fd = descriptors[0];
        descriptors.Clear();
        return (_vrings[index], fd);
    }

    private static ulong ReadU64(ReadOnlySpan<byte> payload, VhostUserRequest request) =>
        payload.Length >= 8 ? BinaryPrimitives.ReadUInt64LittleEndian(payload) : throw new VhostUserException($"{request}: short payload");

    private static byte[] U64(ulong value)
    {
        var bytes = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, value);
        return bytes;
    }

    private sealed class Vring
    {
        public ushort Size;
        public ushort Base;
        public ulong DescUser;
        public ulong AvailUser;
        public ulong UsedUser;
        public bool HasAddresses;
        public bool Enabled;
        public SafeFileHandle? Kick;
        public readonly VringCall Call = new();
        public VirtioFsQueueWorker? Worker;
    }
}
