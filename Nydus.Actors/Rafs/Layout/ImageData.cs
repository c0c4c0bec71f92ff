using System.Buffers.Binary;
using System.Diagnostics.CodeAnalysis;
using Microsoft.Win32.SafeHandles;

namespace Nydus.Actors.Rafs.Layout;

/// <summary>
/// The bootstrap (or whole EROFS image) with bounds-checked little-endian accessors. Every read of untrusted
/// metadata goes through here, so a bad offset becomes a <see cref="RafsException"/> naming the field, never an
/// IndexOutOfRangeException. The <c>what</c> arguments are literals, so a successful read allocates nothing.
/// <para>
/// An image opened from a file is not loaded: metadata comes through <see cref="ImagePageCache"/> (positional
/// reads into a small bounded set of pages, the kernel's page cache holding the rest) and file data of plain EROFS
/// images is read in place into the caller's buffer (<see cref="Read"/>). Not a memory map on purpose: a file
/// truncated under a map raises SIGBUS, which .NET cannot turn into an exception, so a shrunken image would kill
/// the daemon; a short positional read is an ordinary <see cref="RafsErrorKind.IoError"/> (EIO for that request).
/// Images given as bytes (tests, fuzzing) are read from the array.
/// </para>
/// </summary>
internal sealed class ImageData : IDisposable
{
    private readonly byte[]? _bytes;
    private readonly SafeFileHandle? _file;
    private readonly ImagePageCache? _cache;

    public ImageData(byte[] bytes, string path)
    {
        _bytes = bytes;
        Path = path;
        Length = bytes.Length;
    }

    private ImageData(SafeFileHandle file, long length, string path)
    {
        _file = file;
        Path = path;
        Length = length;
        _cache = new ImagePageCache(file, length, path);
    }

    public string Path { get; }

    /// <summary>The image size when it was opened: every bound is checked against it.</summary>
    public long Length { get; }

    /// <summary>Opens an image file for positional reads; its size is fixed (and checked) here.</summary>
    public static ImageData OpenFile(string path, long maxLength)
    {
        SafeFileHandle file = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        try
        {
            long length = RandomAccess.GetLength(file);
            if (length > maxLength)
            {
                throw new RafsException(RafsErrorKind.Unsupported,
                    $"bootstrap size {length} exceeds the {maxLength}-byte limit in {path}");
            }

            return new ImageData(file, length, path);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// <summary>
    /// <paramref name="length"/> bytes at <paramref name="offset"/>, valid for the current call. Small ranges come
    /// from the page cache without allocating; a range larger than a cache page is read into a new array.
    /// </summary>
    public ReadOnlySpan<byte> Span(long offset, long length, string what)
    {
        Check(offset, length, what);
        if (_bytes is not null)
        {
            return new ReadOnlySpan<byte>(_bytes, (int)offset, (int)length);
        }

        return _cache!.Span(offset, (int)length);
    }

    public ReadOnlyMemory<byte> Memory(long offset, long length, string what)
    {
        Check(offset, length, what);
        if (_bytes is not null)
        {
            return new ReadOnlyMemory<byte>(_bytes, (int)offset, (int)length);
        }

        return _cache!.Memory(offset, (int)length);
    }

    /// <summary>Bounds check only: the range lies inside the image. Reads nothing.</summary>
    public void Check(long offset, long length, string what)
    {
        if (offset < 0 || length < 0 || offset > Length - length)
        {
            ThrowPastEnd(offset, length, what);
        }
    }

    /// <summary>
    /// Copies image bytes at <paramref name="offset"/> into <paramref name="destination"/> (file data read in
    /// place: one positional read straight into the caller's buffer, no cache page).
    /// </summary>
    public void Read(long offset, Span<byte> destination, string what)
    {
        Check(offset, destination.Length, what);
        if (_bytes is not null)
        {
            _bytes.AsSpan((int)offset, destination.Length).CopyTo(destination);
            return;
        }

        ImagePageCache.ReadExactly(_file!, offset, destination, Path, Length);
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
            $"{what} offset 0x{offset:x} (+{length}) past end of bootstrap (size {Length}) in {Path}");

    [DoesNotReturn]
    public void Throw(RafsErrorKind kind, string message) => throw new RafsException(kind, $"{message} in {Path}");

    /// <summary>Closes the file. Spans handed out before stay valid (they point into cache pages, not the file).</summary>
    public void Dispose()
    {
        _cache?.Clear();
        _file?.Dispose();
    }
}
