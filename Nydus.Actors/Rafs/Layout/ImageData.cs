using System.Buffers.Binary;
using System.Diagnostics.CodeAnalysis;

namespace Nydus.Actors.Rafs.Layout;

/// <summary>
/// The bootstrap bytes with bounds-checked little-endian accessors. Every read of untrusted metadata goes
/// through here, so a bad offset becomes a <see cref="RafsException"/> naming the field, never an
/// IndexOutOfRangeException. The <c>what</c> arguments are literals, so a successful read allocates nothing.
/// </summary>
internal sealed class ImageData
{
    public ImageData(byte[] bytes, string path)
    {
        Bytes = bytes;
        Path = path;
    }

    public byte[] Bytes { get; }

    public string Path { get; }

    public long Length => Bytes.Length;

    public ReadOnlySpan<byte> Span(long offset, long length, string what)
    {
        if (offset < 0 || length < 0 || offset > Bytes.Length - length)
        {
            ThrowPastEnd(offset, length, what);
        }

        return new ReadOnlySpan<byte>(Bytes, (int)offset, (int)length);
    }

    public ReadOnlyMemory<byte> Memory(long offset, long length, string what)
    {
        Span(offset, length, what);
        return new ReadOnlyMemory<byte>(Bytes, (int)offset, (int)length);
    }

    public byte U8(long offset, string what) => Span(offset, 1, what)[0];

    public ushort U16(long offset, string what) => BinaryPrimitives.ReadUInt16LittleEndian(Span(offset, 2, what));

    public uint U32(long offset, string what) => BinaryPrimitives.ReadUInt32LittleEndian(Span(offset, 4, what));

    /// <summary>
    /// A prefetch table: up to <paramref name="maxEntries"/> little-endian u32 inode numbers at
    /// <paramref name="offset"/>, ended early by a 0 entry (RAFS v5 and v6 write them alike).
    /// </summary>
    public ulong[] PrefetchInodes(long offset, long maxEntries)
    {
        var inodes = new List<ulong>((int)Math.Min(maxEntries, 4096));
        for (long i = 0; i < maxEntries; i++)
        {
            uint ino = U32(offset + i * 4, "prefetch table entry");
            if (ino == 0) break;
            inodes.Add(ino);
        }
        return inodes.ToArray();
    }

    public ulong U64(long offset, string what) => BinaryPrimitives.ReadUInt64LittleEndian(Span(offset, 8, what));

    [DoesNotReturn]
    public void ThrowPastEnd(long offset, long length, string what) =>
        throw new RafsException(RafsErrorKind.OutOfBounds,
            $"{what} offset 0x{offset:x} (+{length}) past end of bootstrap (size {Bytes.Length}) in {Path}");

    [DoesNotReturn]
    public void Throw(RafsErrorKind kind, string message) => throw new RafsException(kind, $"{message} in {Path}");
}
