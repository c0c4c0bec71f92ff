using Microsoft.Win32.SafeHandles;
using Nydus.Actors.Interop;

namespace Nydus.Actors.VirtioFs;

/// <summary>One region of VHOST_USER_SET_MEM_TABLE: where it is for the guest and for the frontend (qemu), and where in its fd.</summary>
public readonly record struct GuestMemoryRegionSpec(ulong GuestPhysicalAddress, ulong Size, ulong UserAddress, ulong MmapOffset);

/// <summary>
/// The guest's RAM as this process sees it: the regions of SET_MEM_TABLE, each mmap()ed MAP_SHARED from the fd the
/// frontend sent. Every guest address the guest hands us (descriptors, rings) goes through <see cref="TrySlice"/>,
/// which answers a span only when the whole range lies inside one mapped region: a malicious or broken guest cannot
/// make the daemon touch memory outside its own RAM. Immutable once mapped; a new table is a new instance, and the
/// old one is disposed (unmapped) only after the queue workers using it have stopped.
/// </summary>
public sealed unsafe class GuestMemory : IDisposable
{
    /// <summary>Largest region accepted (1 TiB): keeps every end address far from overflow.</summary>
    private const ulong MaxRegionSize = 1UL << 40;

    private readonly Region[] _regions;
    private int _disposed;

    private GuestMemory(Region[] regions) => _regions = regions;

    public int RegionCount => _regions.Length;

    /// <summary>Maps each region from its fd (the fds stay the caller's: a mapping outlives its descriptor).</summary>
    /// <exception cref="VhostUserException">A region is empty, too big, overlaps another, or cannot be mapped.</exception>
    public static GuestMemory Map(IReadOnlyList<GuestMemoryRegionSpec> specs, IReadOnlyList<SafeFileHandle> fds)
    {
        if (specs.Count != fds.Count)
            throw new VhostUserException($"SET_MEM_TABLE: {specs.Count} regions but {fds.Count} descriptors");
        var regions = new List<Region>(specs.Count);
        try
        {
            foreach (var (spec, fd) in specs.Zip(fds))
            {
                if (spec.Size == 0 || spec.Size > MaxRegionSize || spec.MmapOffset > MaxRegionSize
                    || spec.GuestPhysicalAddress > ulong.MaxValue - spec.Size || spec.UserAddress > ulong.MaxValue - spec.Size)
                    throw new VhostUserException($"SET_MEM_TABLE: region at guest 0x{spec.GuestPhysicalAddress:x} of 0x{spec.Size:x} bytes is not mappable");
                foreach (Region other in regions)
                {
                    if (spec.GuestPhysicalAddress < other.GuestAddress + other.Size && other.GuestAddress < spec.GuestPhysicalAddress + spec.Size)
                        throw new VhostUserException($"SET_MEM_TABLE: regions at guest 0x{spec.GuestPhysicalAddress:x} and 0x{other.GuestAddress:x} overlap");
                }

                // Map from offset 0 so that an unaligned mmap_offset still works; the region starts mmap_offset in.
                ulong length = spec.Size + spec.MmapOffset;
                nint mapping = Libc.MapShared(fd, length, 0);
                if (mapping == 0)
                    throw new VhostUserException($"SET_MEM_TABLE: mmap of 0x{length:x} bytes failed: {Libc.LastErrno}");
                regions.Add(new Region(spec.GuestPhysicalAddress, spec.Size, spec.UserAddress, mapping, length, mapping + (nint)spec.MmapOffset));
            }

            return new GuestMemory([.. regions]);
        }
        catch
        {
            foreach (Region region in regions) Libc.UnmapMemory(region.Mapping, (nuint)region.MappingLength);
            throw;
        }
    }

    /// <summary>The daemon's view of guest range [<paramref name="address"/>, +<paramref name="length"/>), if it is all guest RAM.</summary>
    public bool TrySlice(ulong address, uint length, out Span<byte> span)
    {
        span = default;
        if (length > int.MaxValue || Volatile.Read(ref _disposed) != 0) return false;
        foreach (Region region in _regions)
        {
            // Written so that nothing overflows: address - start is only taken once address >= start.
            if (address >= region.GuestAddress && address - region.GuestAddress <= region.Size
                && length <= region.Size - (address - region.GuestAddress))
            {
                span = new Span<byte>((byte*)region.Base + (address - region.GuestAddress), (int)length);
                return true;
            }
        }

        return false;
    }

    /// <summary>Translates a frontend (qemu) virtual address, as SET_VRING_ADDR gives them, to a guest-physical one.</summary>
    public bool TryUserToGuest(ulong userAddress, out ulong guestAddress)
    {
        foreach (Region region in _regions)
        {
            if (userAddress >= region.UserAddress && userAddress - region.UserAddress < region.Size)
            {
                guestAddress = region.GuestAddress + (userAddress - region.UserAddress);
                return true;
            }
        }

        guestAddress = 0;
        return false;
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        foreach (Region region in _regions) Libc.UnmapMemory(region.Mapping, (nuint)region.MappingLength);
    }

    private readonly record struct Region(ulong GuestAddress, ulong Size, ulong UserAddress, nint Mapping, ulong MappingLength, nint Base);
}
