using System.Runtime.InteropServices;

namespace Nydus.Actors.Fuse.Session;

/// <summary>One request a worker was serving when <see cref="FuseInflight.Snapshot"/> looked (upstream's FuseOp).</summary>
/// <param name="Inode">The request's node id, as the kernel sent it.</param>
/// <param name="Opcode">The FUSE opcode number.</param>
/// <param name="Unique">The request's unique id.</param>
/// <param name="TimestampSecs">When the worker began it, in seconds since the Unix epoch.</param>
public readonly record struct FuseInflightOp(ulong Inode, uint Opcode, ulong Unique, long TimestampSecs);

/// <summary>
/// Upstream's per-worker in-flight slot (service/src/fusedev.rs <c>inflight_ops</c>, GET /api/v1/metrics/inflight):
/// the request each worker is serving now, set as the worker starts on it and cleared once its reply is written.
/// One slot per worker, written only by that worker with volatile stores (no lock, no allocation); a reader takes a
/// consistent copy with a sequence count, retrying while the worker is mid-update.
/// </summary>
public sealed class FuseInflight
{
    private readonly Slot[] _slots;

    public FuseInflight(int workers) => _slots = new Slot[workers];

    /// <summary>Marks worker <paramref name="worker"/> busy with <paramref name="request"/> (raw, header first).</summary>
    public void Begin(int worker, ReadOnlySpan<byte> request)
    {
        if (request.Length < 24) return;
        ref Slot slot = ref _slots[worker];
        int sequence = slot.Sequence;
        // fuse_in_header: len u32, opcode u32, unique u64, nodeid u64 (host order).
        Volatile.Write(ref slot.Sequence, sequence + 1);
        Volatile.Write(ref slot.Opcode, MemoryMarshal.Read<uint>(request[4..]));
        Volatile.Write(ref slot.Unique, MemoryMarshal.Read<ulong>(request[8..]));
        Volatile.Write(ref slot.Inode, MemoryMarshal.Read<ulong>(request[16..]));
        Volatile.Write(ref slot.StartedMillis, Environment.TickCount64);
        Volatile.Write(ref slot.Busy, 1);
        Volatile.Write(ref slot.Sequence, sequence + 2);
    }

    /// <summary>Marks worker <paramref name="worker"/> idle (its reply is written, or it stopped).</summary>
    public void End(int worker) => Volatile.Write(ref _slots[worker].Busy, 0);

    /// <summary>The requests in flight now, one per busy worker (empty when all are idle).</summary>
    public List<FuseInflightOp> Snapshot()
    {
        var ops = new List<FuseInflightOp>();
        long nowMillis = Environment.TickCount64;
        long nowUnixMillis = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        for (int i = 0; i < _slots.Length; i++)
        {
            ref Slot slot = ref _slots[i];
            // A worker changes its slot twice per request; a few tries always find it between two changes.
            for (int attempt = 0; attempt < 100; attempt++)
            {
                int before = Volatile.Read(ref slot.Sequence);
                if ((before & 1) != 0)
                {
                    Thread.SpinWait(20);
                    continue;
                }
                int busy = Volatile.Read(ref slot.Busy);
                var op = new FuseInflightOp(Volatile.Read(ref slot.Inode), Volatile.Read(ref slot.Opcode),
                    Volatile.Read(ref slot.Unique), (nowUnixMillis - (nowMillis - Volatile.Read(ref slot.StartedMillis))) / 1000);
                if (Volatile.Read(ref slot.Sequence) != before) continue;
                if (busy != 0) ops.Add(op);
                break;
            }
        }
        return ops;
    }

    /// <summary>One worker's slot, padded to its own cache lines so workers do not share one.</summary>
    [StructLayout(LayoutKind.Sequential, Size = 128)]
    private struct Slot
    {
        public int Sequence;
        public int Busy;
        public uint Opcode;
        public ulong Unique;
        public ulong Inode;
        public long StartedMillis;
    }
}
