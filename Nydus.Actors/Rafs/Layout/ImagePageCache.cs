using Microsoft.Win32.SafeHandles;

namespace Nydus.Actors.Rafs.Layout;

/// <summary>
/// A small, bounded cache of image pages read with pread, so an instance's memory grows with what is accessed (up
/// to <see cref="SlotCount"/> pages) and never with the image's size; the kernel's page cache keeps the rest warm.
/// <para>
/// Page k holds the bytes [k * <see cref="PageSize"/>, k * PageSize + PageSize + <see cref="Overlap"/>): pages
/// overlap, so any range of at most <see cref="Overlap"/> bytes (every inode, dirent block, chunk record, name or
/// symlink target) lies inside one page and is served as a span of it without copying or allocating.
/// </para>
/// <para>
/// Lock-free: a page is immutable once published, slots are swapped with plain reference writes, and an evicted
/// page stays alive for as long as a span of it is in use (the GC tracks the span's reference). Concurrent misses
/// on the same page may both read it; one copy wins the slot. Two-way set associative: a new page goes to the
/// first way of its set and the page it displaces moves to the second.
/// </para>
/// </summary>
internal sealed class ImagePageCache
{
    public const int PageSize = 16 * 1024;
    public const int Overlap = 4 * 1024;
    public const int SlotCount = 32;

    private readonly SafeFileHandle _file;
    private readonly long _length;
    private readonly string _path;
    private readonly Page?[] _slots = new Page?[SlotCount];

    public ImagePageCache(SafeFileHandle file, long length, string path)
    {
        _file = file;
        _length = length;
        _path = path;
    }

    /// <summary>Drops every page (at dispose): an image object that is still referenced holds no page memory.</summary>
    public void Clear() => Array.Clear(_slots);

    /// <summary>Most bytes the cache can hold (what an instance's metadata costs at worst).</summary>
    public static long CapacityBytes => (long)SlotCount * (PageSize + Overlap);

    /// <summary>The range (already bounds-checked by the caller) as a span of a page, or of a new array if larger.</summary>
    public ReadOnlySpan<byte> Span(long offset, int length)
    {
        if (length == 0)
        {
            return ReadOnlySpan<byte>.Empty;
        }

        long index = offset / PageSize;
        int start = (int)(offset - index * PageSize);
        if (start + length > PageSize + Overlap)
        {
            return ReadCopy(offset, length);
        }

        return GetPage(index).AsSpan(start, length);
    }

    public ReadOnlyMemory<byte> Memory(long offset, int length)
    {
        if (length == 0)
        {
            return ReadOnlyMemory<byte>.Empty;
        }

        long index = offset / PageSize;
        int start = (int)(offset - index * PageSize);
        if (start + length > PageSize + Overlap)
        {
            return ReadCopy(offset, length);
        }

        return GetPage(index).AsMemory(start, length);
    }

    /// <summary>
    /// Fills <paramref name="destination"/> from the file; a short read means the file shrank after it was opened,
    /// reported as an I/O error of this request (the image stays mounted; other requests are unaffected).
    /// </summary>
    public static void ReadExactly(SafeFileHandle file, long offset, Span<byte> destination, string path, long openedLength)
    {
        int done = 0;
        try
        {
            while (done < destination.Length)
            {
                int n = RandomAccess.Read(file, destination.Slice(done), offset + done);
                if (n == 0)
                {
                    throw new RafsException(RafsErrorKind.IoError,
                        $"image {path} ends at {offset + done} but was {openedLength} bytes when mounted (truncated?)");
                }

                done += n;
            }
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or UnauthorizedAccessException)
        {
            throw new RafsException(RafsErrorKind.IoError, $"cannot read image {path} at {offset + done}: {e.Message}", e);
        }
    }

    private byte[] ReadCopy(long offset, int length)
    {
        byte[] copy = GC.AllocateUninitializedArray<byte>(length);
        ReadExactly(_file, offset, copy, _path, _length);
        return copy;
    }

    private byte[] GetPage(long index)
    {
        int set = (int)((ulong)index % (SlotCount / 2)) * 2;
        Page? first = Volatile.Read(ref _slots[set]);
        if (first is not null && first.Index == index)
        {
            return first.Bytes;
        }

        Page? second = Volatile.Read(ref _slots[set + 1]);
        if (second is not null && second.Index == index)
        {
            return second.Bytes;
        }

        long start = index * PageSize;
        var page = new Page(index, GC.AllocateUninitializedArray<byte>((int)Math.Min(PageSize + Overlap, _length - start)));
        ReadExactly(_file, start, page.Bytes, _path, _length);
        if (first is not null)
        {
            Volatile.Write(ref _slots[set + 1], first);
        }

        Volatile.Write(ref _slots[set], page);
        return page.Bytes;
    }

    private sealed record Page(long Index, byte[] Bytes);
}
