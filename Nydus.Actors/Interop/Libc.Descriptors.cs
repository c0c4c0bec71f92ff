using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Nydus.Actors.Interop;

/// <summary>Descriptor-level syscalls: open, close, read, write, dup, fcntl.</summary>
internal static partial class Libc
{
    public const int O_RDONLY = 0x0;
    public const int O_WRONLY = 0x1;
    public const int O_RDWR = 0x2;
    public const int O_ACCMODE = 0x3;
    public const int O_CREAT = 0x40;
    public const int O_EXCL = 0x80;
    public const int O_NOCTTY = 0x100;
    public const int O_TRUNC = 0x200;
    public const int O_APPEND = 0x400;
    public const int O_NONBLOCK = 0x800;
    public const int O_DIRECTORY = 0x10000;
    public const int O_NOFOLLOW = 0x20000;
    public const int O_CLOEXEC = 0x80000;
    public const int O_PATH = 0x200000;

    public const int F_GETFL = 3;
    public const int F_SETFL = 4;
    public const int F_DUPFD_CLOEXEC = 1030;
    /// <summary>Open file description locks (Linux 3.15): held by the open file, released when its last descriptor
    /// closes, in whatever process that is.</summary>
    public const int F_OFD_GETLK = 36;
    public const int F_OFD_SETLK = 37;
    public const short F_WRLCK = 1;
    public const short F_UNLCK = 2;

    /// <summary><c>struct flock</c> (x86_64 and arm64 layout: 32 bytes).</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct FileLock
    {
        public short Type;
        public short Whence;
        public long Start;
        public long Length;
        public int Pid;
    }

    /// <summary>The "current directory" pseudo descriptor for the *at() calls.</summary>
    public const int AT_FDCWD = -100;

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true)]
    public static partial int Open(ReadOnlySpan<byte> path, int flags, uint mode);

    [LibraryImport("libc", EntryPoint = "openat", SetLastError = true)]
    public static partial int OpenAt(SafeFileHandle dirFd, ReadOnlySpan<byte> path, int flags, uint mode);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    public static partial int Close(int fd);

    [LibraryImport("libc", EntryPoint = "read", SetLastError = true)]
    public static unsafe partial nint Read(SafeFileHandle fd, byte* buffer, nuint count);

    [LibraryImport("libc", EntryPoint = "write", SetLastError = true)]
    public static unsafe partial nint Write(SafeFileHandle fd, byte* buffer, nuint count);

    [LibraryImport("libc", EntryPoint = "pread64", SetLastError = true)]
    public static unsafe partial nint PRead(SafeFileHandle fd, byte* buffer, nuint count, long offset);

    [LibraryImport("libc", EntryPoint = "pwrite64", SetLastError = true)]
    public static unsafe partial nint PWrite(SafeFileHandle fd, byte* buffer, nuint count, long offset);

    [LibraryImport("libc", EntryPoint = "fcntl", SetLastError = true)]
    public static partial int Fcntl(SafeFileHandle fd, int command, int argument);

    [LibraryImport("libc", EntryPoint = "fcntl", SetLastError = true)]
    public static partial int FcntlLock(SafeFileHandle fd, int command, ref FileLock fileLock);

    /// <summary>lseek whence: the next hole at or after the offset (the file's end counts as one).</summary>
    public const int SEEK_HOLE = 4;

    [LibraryImport("libc", EntryPoint = "lseek64", SetLastError = true)]
    public static partial long LSeek(SafeFileHandle fd, long offset, int whence);

    /// <summary>The errno of the last failed P/Invoke on this thread.</summary>
    public static Errno LastErrno => (Errno)Marshal.GetLastPInvokeError();

    /// <summary>Wraps a freshly returned descriptor so it can never leak, or returns null when the call failed.</summary>
    public static SafeFileHandle? Own(int fd) => fd < 0 ? null : new SafeFileHandle(fd, ownsHandle: true);

    /// <summary>Duplicates <paramref name="fd"/> (close-on-exec); the copy shares the open file description.</summary>
    public static SafeFileHandle Duplicate(SafeFileHandle fd)
    {
        int copy = Fcntl(fd, F_DUPFD_CLOEXEC, 0);
        if (copy < 0)
        {
            throw new IOException($"dup of descriptor {fd.DangerousGetHandle()} failed: {LastErrno}");
        }

        return new SafeFileHandle(copy, ownsHandle: true);
    }
}
