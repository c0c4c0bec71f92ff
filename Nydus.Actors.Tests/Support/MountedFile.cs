using System.Runtime.InteropServices;
using Nydus.Actors.Interop;

namespace Nydus.Actors.Tests.Support;

/// <summary>
/// Reads a whole file with open(2)/read(2) so a test sees the errno a program would see (EIO from a corrupt
/// chunk, for example), which .NET's exceptions do not reliably carry.
/// </summary>
public static partial class MountedFile
{
    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int OpenNative(string path, int flags);

    [LibraryImport("libc", EntryPoint = "read", SetLastError = true)]
    private static unsafe partial nint ReadNative(int fd, byte* buffer, nuint count);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int CloseNative(int fd);

    /// <summary>Reads <paramref name="path"/> to its end in <paramref name="chunk"/>-byte reads.</summary>
    public static unsafe Errno TryReadAll(string path, out byte[] content, int chunk = 1 << 20)
    {
        content = [];
        int fd = OpenNative(path, Libc.O_RDONLY | Libc.O_CLOEXEC);
        if (fd < 0)
        {
            return (Errno)Marshal.GetLastPInvokeError();
        }

        try
        {
            using var collected = new MemoryStream();
            var buffer = new byte[chunk];
            while (true)
            {
                nint n;
                fixed (byte* p = buffer)
                {
                    n = ReadNative(fd, p, (nuint)buffer.Length);
                }

                if (n < 0)
                {
                    int errno = Marshal.GetLastPInvokeError();
                    if (errno == (int)Errno.EINTR)
                    {
                        continue;
                    }

                    return (Errno)errno;
                }

                if (n == 0)
                {
                    content = collected.ToArray();
                    return Errno.Success;
                }

                collected.Write(buffer, 0, (int)n);
            }
        }
        finally
        {
            CloseNative(fd);
        }
    }
}
