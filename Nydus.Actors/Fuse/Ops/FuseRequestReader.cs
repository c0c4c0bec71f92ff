using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Nydus.Actors.Fuse.Ops;

/// <summary>
/// Walks a request body: fixed structs, then NUL-terminated names or raw data. Every read checks the
/// remaining length, so a short or corrupt request becomes EINVAL instead of an out-of-range read.
/// </summary>
internal ref struct FuseRequestReader
{
    private ReadOnlySpan<byte> _remaining;

    public FuseRequestReader(ReadOnlySpan<byte> body) => _remaining = body;

    public readonly ReadOnlySpan<byte> Remaining => _remaining;

    public bool TryRead<T>(out T value)
        where T : struct
    {
        int size = Unsafe.SizeOf<T>();
        if (_remaining.Length < size)
        {
            value = default;
            return false;
        }

        value = MemoryMarshal.Read<T>(_remaining);
        _remaining = _remaining[size..];
        return true;
    }

    /// <summary>Reads a struct of which the kernel may send only the first <paramref name="minimumSize"/> bytes (older protocol minors).</summary>
    public bool TryReadPrefix<T>(int minimumSize, out T value)
        where T : struct
    {
        int size = Unsafe.SizeOf<T>();
        if (_remaining.Length >= size)
        {
            return TryRead(out value);
        }

        value = default;
        if (_remaining.Length < minimumSize)
        {
            return false;
        }

        _remaining[..minimumSize].CopyTo(MemoryMarshal.AsBytes(MemoryMarshal.CreateSpan(ref value, 1)));
        _remaining = _remaining[minimumSize..];
        return true;
    }

    /// <summary>
    /// Reads only the first <paramref name="size"/> bytes of a struct, the rest left zero: for requests whose
    /// struct is shorter unless an extension was negotiated and which carry more data behind it.
    /// </summary>
    public bool TryReadTruncated<T>(int size, out T value)
        where T : struct
    {
        value = default;
        if (size > Unsafe.SizeOf<T>() || _remaining.Length < size)
        {
            return false;
        }

        _remaining[..size].CopyTo(MemoryMarshal.AsBytes(MemoryMarshal.CreateSpan(ref value, 1)));
        _remaining = _remaining[size..];
        return true;
    }

    /// <summary>Reads a NUL-terminated name and returns it without the terminator.</summary>
    public bool TryReadName(out ReadOnlySpan<byte> name)
    {
        int end = _remaining.IndexOf((byte)0);
        if (end < 0)
        {
            name = default;
            return false;
        }

        name = _remaining[..end];
        _remaining = _remaining[(end + 1)..];
        return true;
    }

    public bool TryReadBytes(int count, out ReadOnlySpan<byte> bytes)
    {
        if (count < 0 || _remaining.Length < count)
        {
            bytes = default;
            return false;
        }

        bytes = _remaining[..count];
        _remaining = _remaining[count..];
        return true;
    }
}
