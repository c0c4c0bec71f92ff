using System.Text;

namespace Nydus.Actors.Interop;

/// <summary>
/// Builds NUL-terminated byte paths in caller-provided (usually stack) buffers, so syscalls taking
/// <c>const char*</c> can be called without allocating strings.
/// </summary>
internal static class PathBytes
{
    /// <summary>Longest name a Linux directory entry may have (NAME_MAX) plus the terminator.</summary>
    public const int NameBufferSize = 256;

    /// <summary>Enough for "/proc/self/fd/" plus any int and the terminator.</summary>
    public const int ProcFdBufferSize = 32;

    private static ReadOnlySpan<byte> ProcSelfFd => "/proc/self/fd/"u8;

    /// <summary>Copies <paramref name="name"/> and a NUL into <paramref name="buffer"/>.</summary>
    /// <returns>The terminated name, or an empty span when it does not fit (callers answer ENAMETOOLONG).</returns>
    public static ReadOnlySpan<byte> Terminate(ReadOnlySpan<byte> name, Span<byte> buffer)
    {
        if (name.Length + 1 > buffer.Length)
        {
            return default;
        }

        name.CopyTo(buffer);
        buffer[name.Length] = 0;
        return buffer[..(name.Length + 1)];
    }

    /// <summary>Writes "/proc/self/fd/<paramref name="fd"/>\0": the path that reopens an O_PATH descriptor.</summary>
    public static ReadOnlySpan<byte> ProcFd(int fd, Span<byte> buffer)
    {
        ProcSelfFd.CopyTo(buffer);
        fd.TryFormat(buffer[ProcSelfFd.Length..], out int written);
        int end = ProcSelfFd.Length + written;
        buffer[end] = 0;
        return buffer[..(end + 1)];
    }

    /// <summary>An empty NUL-terminated path, for the AT_EMPTY_PATH calls.</summary>
    public static ReadOnlySpan<byte> Empty => "\0"u8;

    /// <summary>A managed string as NUL-terminated UTF-8 (setup code only, it allocates).</summary>
    public static byte[] FromString(string path) => Encoding.UTF8.GetBytes(path + "\0");
}
