using System.Runtime.InteropServices;

namespace Nydus.Bench.Passthrough;

/// <summary>
/// The few raw syscalls the passthrough benchmark needs. The small-file loop calls open/write/close/lstat/unlink
/// directly because .NET's file APIs add fstat and flock calls, which would reach the FUSE servers as extra
/// requests and blur the comparison.
/// </summary>
internal static unsafe partial class BenchSyscalls
{
    public const int SIGTERM = 15;
    public const int MNT_DETACH = 2;

    private const int O_WRONLY = 0x1;
    private const int O_CREAT = 0x40;
    private const int O_EXCL = 0x80;
    private const int O_CLOEXEC = 0x80000;

    /// <summary>Larger than glibc's x86_64 struct stat (144 bytes); the content is not read.</summary>
    private const int StatBufferSize = 256;

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    public static partial int Kill(int pid, int signal);

    [LibraryImport("libc", EntryPoint = "umount2", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Umount2(string target, int flags);

    [LibraryImport("libc", EntryPoint = "sync")]
    public static partial void Sync();

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true)]
    private static partial int Open(byte* path, int flags, uint mode);

    [LibraryImport("libc", EntryPoint = "write", SetLastError = true)]
    private static partial nint Write(int fd, byte* buffer, nuint count);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int Close(int fd);

    [LibraryImport("libc", EntryPoint = "lstat", SetLastError = true)]
    private static partial int LStat(byte* path, byte* statBuffer);

    [LibraryImport("libc", EntryPoint = "unlink", SetLastError = true)]
    private static partial int Unlink(byte* path);

    /// <summary>Creates <paramref name="path"/> (NUL-terminated) exclusively, writes <paramref name="content"/>, closes it.</summary>
    public static void CreateFile(ReadOnlySpan<byte> path, ReadOnlySpan<byte> content)
    {
        fixed (byte* pathPointer = path)
        fixed (byte* contentPointer = content)
        {
            int fd = Open(pathPointer, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0x1A4 /* 0644 */);
            if (fd < 0) ThrowFor("open", path);
            nint written = Write(fd, contentPointer, (nuint)content.Length);
            int writeError = written < 0 ? Marshal.GetLastPInvokeError() : 0;
            if (Close(fd) != 0 || written != content.Length)
                throw new IOException($"write/close of {Describe(path)} failed: errno {(writeError != 0 ? writeError : Marshal.GetLastPInvokeError())}, wrote {written} of {content.Length} bytes");
        }
    }

    public static void LStat(ReadOnlySpan<byte> path)
    {
        byte* statBuffer = stackalloc byte[StatBufferSize];
        fixed (byte* pathPointer = path)
        {
            if (LStat(pathPointer, statBuffer) != 0) ThrowFor("lstat", path);
        }
    }

    public static void Unlink(ReadOnlySpan<byte> path)
    {
        fixed (byte* pathPointer = path)
        {
            if (Unlink(pathPointer) != 0) ThrowFor("unlink", path);
        }
    }

    private static void ThrowFor(string call, ReadOnlySpan<byte> path) =>
        throw new IOException($"{call} of {Describe(path)} failed: errno {Marshal.GetLastPInvokeError()}");

    private static string Describe(ReadOnlySpan<byte> path) => System.Text.Encoding.UTF8.GetString(path.TrimEnd((byte)0));
}
