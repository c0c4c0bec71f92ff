using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Nydus.Actors.VirtioFs;

/// <summary>What <see cref="SplitVirtqueue.TryPop"/> found.</summary>
public enum PopResult
{
    /// <summary>The guest has made nothing new available.</summary>
    Empty,

    /// <summary>A well-formed chain, ready to serve.</summary>
    Chain,

    /// <summary>A chain with a bad descriptor (outside guest memory, a loop, readable after writable, bad indirect
    /// table): it goes back to the guest unused (used length 0); the queue goes on.</summary>
    BadChain,

    /// <summary>The rings themselves are inconsistent (available index too far ahead, head index out of range): the
    /// queue stops until the frontend resets it.</summary>
    Broken,
}

/// <summary>
/// A split virtqueue (virtio 1.x §2.7) in guest memory, from the device's side: the descriptor table, the available
/// ring the guest fills and the used ring we fill. Every guest address is translated through <see cref="GuestMemory"/>
/// with a bounds check, descriptors are copied out before they are looked at (the guest may change them under us),
/// and chain walks are bounded by the table size, so no guest can make this read or write outside its own RAM or
/// loop forever. Used by one worker thread at a time (the queue's).
/// </summary>
public sealed class SplitVirtqueue
{
    public const ushort DescFlagNext = 1;
    public const ushort DescFlagWrite = 2;
    public const ushort DescFlagIndirect = 4;
    public const ushort AvailFlagNoInterrupt = 1;
    public const int MaxSize = 32768;
    private const int DescriptorSize = 16;

    private readonly GuestMemory _memory;
    private readonly ulong _descriptors;
    private readonly ulong _avail;
    private readonly ulong _used;

    /// <param name="memory">The guest's RAM.</param>
    /// <param name="size">Entries per ring (a power of two up to 32768).</param>
    /// <param name="descriptors">Guest-physical address of the descriptor table.</param>
    /// <param name="avail">Guest-physical address of the available ring.</param>
    /// <param name="used">Guest-physical address of the used ring.</param>
    /// <param name="nextAvail">Where serving starts in the available ring (SET_VRING_BASE).</param>
    /// <exception cref="VhostUserException">A ring does not lie inside guest memory, or the size is not valid.</exception>
    public SplitVirtqueue(GuestMemory memory, ushort size, ulong descriptors, ulong avail, ulong used, ushort nextAvail)
    {
        if (size == 0 || size > MaxSize || (size & (size - 1)) != 0)
            throw new VhostUserException($"queue size {size} is not a power of two up to {MaxSize}");
        if (descriptors % 16 != 0 || avail % 2 != 0 || used % 4 != 0)
            throw new VhostUserException($"ring addresses 0x{descriptors:x}/0x{avail:x}/0x{used:x} are misaligned");
        if (!memory.TrySlice(descriptors, (uint)(DescriptorSize * size), out _)
            || !memory.TrySlice(avail, (uint)(6 + 2 * size), out _)
            || !memory.TrySlice(used, (uint)(6 + 8 * size), out _))
            throw new VhostUserException($"rings at 0x{descriptors:x}/0x{avail:x}/0x{used:x} (size {size}) are not inside guest memory");
        _memory = memory;
        Size = size;
        _descriptors = descriptors;
        _avail = avail;
        _used = used;
        NextAvail = nextAvail;
        // The used index continues from what is in the ring (as after a restart of the backend).
        NextUsed = Volatile.Read(ref UsedIndexRef());
    }

    public ushort Size { get; }

    /// <summary>The next available-ring entry to take: what GET_VRING_BASE answers.</summary>
    public ushort NextAvail { get; private set; }

    public ushort NextUsed { get; private set; }

    /// <summary>Takes the next chain the guest made available, if any, into <paramref name="chain"/>.</summary>
    public PopResult TryPop(DescriptorChain chain)
    {
        ushort availIndex = Volatile.Read(ref AvailIndexRef());
        ushort pending = (ushort)(availIndex - NextAvail);
        if (pending == 0) return PopResult.Empty;
        if (pending > Size) return PopResult.Broken;
        // The ring entry is read after the index (acquire above), as the guest wrote it before the index.
        ushort head = RingSlot(_avail + 4 + 2 * (ulong)(NextAvail % Size));
        NextAvail++;
        if (head >= Size) return PopResult.Broken;
        chain.Reset(head);
        return Walk(chain, head) ? PopResult.Chain : PopResult.BadChain;
    }

    /// <summary>Hands a chain back to the guest with <paramref name="written"/> bytes of reply in its writable part.</summary>
    public void PushUsed(ushort head, uint written)
    {
        ulong element = _used + 4 + 8 * (ulong)(NextUsed % Size);
        _memory.TrySlice(element, 8, out Span<byte> slot); // inside the ring checked at construction
        BinaryPrimitives.WriteUInt32LittleEndian(slot, head);
        BinaryPrimitives.WriteUInt32LittleEndian(slot[4..], written);
        NextUsed++;
        // Release: the element must be visible before the index that publishes it.
        Volatile.Write(ref UsedIndexRef(), NextUsed);
    }

    /// <summary>False when the guest asked not to be interrupted (VRING_AVAIL_F_NO_INTERRUPT; no EVENT_IDX is offered).</summary>
    public bool GuestWantsInterrupt()
    {
        // Full fence: our used-index store must be ordered before this load of the guest's flags.
        Interlocked.MemoryBarrier();
        _memory.TrySlice(_avail, 2, out Span<byte> flags);
        return (Volatile.Read(ref Unsafe.As<byte, ushort>(ref MemoryMarshal.GetReference(flags))) & AvailFlagNoInterrupt) == 0;
    }

    private bool Walk(DescriptorChain chain, ushort head)
    {
        ulong table = _descriptors;
        uint tableSize = Size;
        uint index = head;
        bool indirect = false;
        for (uint seen = 0; ; seen++)
        {
            // Each descriptor may be visited once; more means the guest made a loop.
            if (index >= tableSize || seen >= tableSize) return false;
            if (!_memory.TrySlice(table + DescriptorSize * (ulong)index, DescriptorSize, out Span<byte> raw)) return false;
            // Copied out once: the guest can rewrite the descriptor while we look at it.
            ulong address = BinaryPrimitives.ReadUInt64LittleEndian(raw);
            uint length = BinaryPrimitives.ReadUInt32LittleEndian(raw[8..]);
            ushort flags = BinaryPrimitives.ReadUInt16LittleEndian(raw[12..]);
            ushort next = BinaryPrimitives.ReadUInt16LittleEndian(raw[14..]);

            if ((flags & DescFlagIndirect) != 0)
            {
                // An indirect table replaces the chain: one level only, never chained itself (virtio 2.7.5.3.1).
                if (indirect || (flags & DescFlagNext) != 0 || length == 0 || length % DescriptorSize != 0
                    || length / DescriptorSize > MaxSize || !_memory.TrySlice(address, length, out _))
                    return false;
                indirect = true;
                table = address;
                tableSize = length / DescriptorSize;
                index = 0;
                seen = uint.MaxValue; // becomes 0 with the loop's increment
                continue;
            }

            if (!_memory.TrySlice(address, length, out _)) return false;
            if (!chain.Add(address, length, (flags & DescFlagWrite) != 0)) return false;
            if ((flags & DescFlagNext) == 0) return true;
            index = next;
        }
    }

    private ushort RingSlot(ulong address)
    {
        _memory.TrySlice(address, 2, out Span<byte> slot);
        return BinaryPrimitives.ReadUInt16LittleEndian(slot);
    }

    private ref ushort AvailIndexRef()
    {
        _memory.TrySlice(_avail + 2, 2, out Span<byte> index);
        return ref Unsafe.As<byte, ushort>(ref MemoryMarshal.GetReference(index));
    }

    private ref ushort UsedIndexRef()
    {
        _memory.TrySlice(_used + 2, 2, out Span<byte> index);
        return ref Unsafe.As<byte, ushort>(ref MemoryMarshal.GetReference(index));
    }
}
