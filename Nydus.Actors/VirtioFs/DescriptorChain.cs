namespace Nydus.Actors.VirtioFs;

/// <summary>
/// One request as the guest laid it out: a head index and the guest-memory segments of its descriptors, the
/// device-readable ones (the FUSE request) before the device-writable ones (room for the reply). Reused by its
/// worker for every request, so serving allocates nothing once the segment array has grown to the largest chain.
/// Segments are spans into the mapped guest memory, already bounds-checked by <see cref="GuestMemory.TrySlice"/>.
/// </summary>
public sealed class DescriptorChain
{
    private Segment[] _segments = new Segment[64];

    /// <summary>The head descriptor's index: what goes back in the used ring.</summary>
    public ushort Head { get; internal set; }

    public int Count { get; private set; }

    /// <summary>Segments 0..ReadableCount-1 are device-readable; the rest device-writable.</summary>
    public int ReadableCount { get; private set; }

    public long ReadableBytes { get; private set; }

    public long WritableBytes { get; private set; }

    internal void Reset(ushort head)
    {
        Head = head;
        Count = 0;
        ReadableCount = 0;
        ReadableBytes = 0;
        WritableBytes = 0;
    }

    /// <returns>False when a readable segment follows a writable one (the virtio spec forbids it).</returns>
    internal bool Add(ulong address, uint length, bool writable)
    {
        if (!writable && Count > ReadableCount) return false;
        if (Count == _segments.Length) Array.Resize(ref _segments, _segments.Length * 2);
        _segments[Count++] = new Segment(address, length);
        if (writable)
        {
            WritableBytes += length;
        }
        else
        {
            ReadableCount++;
            ReadableBytes += length;
        }

        return true;
    }

    internal Segment this[int index] => _segments[index];

    /// <summary>Copies the readable segments into <paramref name="destination"/>.</summary>
    /// <returns>Bytes copied, or -1 when they do not fit (or memory vanished).</returns>
    public int GatherReadable(GuestMemory memory, Span<byte> destination)
    {
        if (ReadableBytes > destination.Length) return -1;
        int at = 0;
        for (int i = 0; i < ReadableCount; i++)
        {
            if (!memory.TrySlice(_segments[i].Address, _segments[i].Length, out Span<byte> source)) return -1;
            source.CopyTo(destination[at..]);
            at += source.Length;
        }

        return at;
    }

    /// <summary>Copies <paramref name="source"/> into the writable segments, as much as they hold.</summary>
    /// <returns>Bytes written (what the used ring reports).</returns>
    public int ScatterWritable(GuestMemory memory, ReadOnlySpan<byte> source)
    {
        int at = 0;
        for (int i = ReadableCount; i < Count && at < source.Length; i++)
        {
            if (!memory.TrySlice(_segments[i].Address, _segments[i].Length, out Span<byte> target)) break;
            int n = Math.Min(target.Length, source.Length - at);
            source.Slice(at, n).CopyTo(target);
            at += n;
        }

        return at;
    }

    internal readonly record struct Segment(ulong Address, uint Length);
}
