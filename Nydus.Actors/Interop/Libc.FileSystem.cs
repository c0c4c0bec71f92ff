using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Nydus.Actors.Interop;

/// <summary>
/// Path and inode syscalls used by the passthrough filesystem. Paths are NUL-terminated UTF-8 byte spans
/// (see <see cref="PathBytes"/>) so a request never allocates a managed string.
/// </summary>
internal static partial class Libc
{
    public const int AT_SYMLINK_NOFOLLOW = 0x100;
    public const int AT_REMOVEDIR = 0x200;
    public const int AT_SYMLINK_FOLLOW = 0x400;
    public const int AT_EACCESS = 0x200;
    public const int AT_EMPTY_PATH = 0x1000;
    public const uint STATX_BASIC_STATS = 0x7ff;

    public const long UTIME_NOW = (1L << 30) - 1;
    public const long UTIME_OMIT = (1L << 30) - 2;

    /// <summary>unshare(2) flag: give the calling thread its own working directory (fs struct).</summary>
    public const int CLONE_FS = 0x200;

    [LibraryImport("libc", EntryPoint = "unshare", SetLastError = true)]
    public static partial int Unshare(int flags);

    [LibraryImport("libc", EntryPoint = "chdir", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int ChDir(string path);

    [StructLayout(LayoutKind.Sequential)]
    public struct Timespec
    {
        public long Seconds;
        public long Nanoseconds;
    }

    [LibraryImport("libc", EntryPoint = "realpath", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial IntPtr RealPathNative(string path, IntPtr resolved);

    [LibraryImport("libc", EntryPoint = "free")]
    private static partial void Free(IntPtr pointer);

    /// <summary>realpath(3): <paramref name="path"/> with every symbolic link, "." and ".." resolved; null when a
    /// component does not exist or cannot be read (errno in <see cref="LastErrno"/>).</summary>
    public static string? RealPath(string path)
    {
        IntPtr resolved = RealPathNative(path, IntPtr.Zero);
        if (resolved == IntPtr.Zero) return null;
        try { return Marshal.PtrToStringUTF8(resolved); }
        finally { Free(resolved); }
    }

    [LibraryImport("libc", EntryPoint = "statx", SetLastError = true)]
    public static partial int StatxAt(SafeFileHandle dirFd, ReadOnlySpan<byte> path, int flags, uint mask, out Statx result);

    [LibraryImport("libc", EntryPoint = "fchownat", SetLastError = true)]
    public static partial int FChownAt(SafeFileHandle dirFd, ReadOnlySpan<byte> path, uint uid, uint gid, int flags);

    [LibraryImport("libc", EntryPoint = "chmod", SetLastError = true)]
    public static partial int Chmod(ReadOnlySpan<byte> path, uint mode);

    [LibraryImport("libc", EntryPoint = "fchmod", SetLastError = true)]
    public static partial int FChmod(SafeFileHandle fd, uint mode);

    [LibraryImport("libc", EntryPoint = "truncate64", SetLastError = true)]
    public static partial int Truncate(ReadOnlySpan<byte> path, long length);

    [LibraryImport("libc", EntryPoint = "ftruncate64", SetLastError = true)]
    public static partial int FTruncate(SafeFileHandle fd, long length);

    [LibraryImport("libc", EntryPoint = "utimensat", SetLastError = true)]
    public static partial int UtimensAt(int dirFd, ReadOnlySpan<byte> path, ReadOnlySpan<Timespec> times, int flags);

    [LibraryImport("libc", EntryPoint = "utimensat", SetLastError = true)]
    public static partial int UtimensAt(SafeFileHandle dirFd, ReadOnlySpan<byte> path, ReadOnlySpan<Timespec> times, int flags);

    [LibraryImport("libc", EntryPoint = "futimens", SetLastError = true)]
    public static partial int FUtimens(SafeFileHandle fd, ReadOnlySpan<Timespec> times);

    [LibraryImport("libc", EntryPoint = "readlinkat", SetLastError = true)]
    public static partial nint ReadLinkAt(SafeFileHandle dirFd, ReadOnlySpan<byte> path, Span<byte> buffer, nuint size);

    [LibraryImport("libc", EntryPoint = "mknodat", SetLastError = true)]
    public static partial int MknodAt(SafeFileHandle dirFd, ReadOnlySpan<byte> path, uint mode, ulong device);

    [LibraryImport("libc", EntryPoint = "mkdirat", SetLastError = true)]
    public static partial int MkdirAt(SafeFileHandle dirFd, ReadOnlySpan<byte> path, uint mode);

    [LibraryImport("libc", EntryPoint = "symlinkat", SetLastError = true)]
    public static partial int SymlinkAt(ReadOnlySpan<byte> target, SafeFileHandle dirFd, ReadOnlySpan<byte> path);

    [LibraryImport("libc", EntryPoint = "unlinkat", SetLastError = true)]
    public static partial int UnlinkAt(SafeFileHandle dirFd, ReadOnlySpan<byte> path, int flags);

    [LibraryImport("libc", EntryPoint = "renameat2", SetLastError = true)]
    public static partial int RenameAt2(SafeFileHandle oldDirFd, ReadOnlySpan<byte> oldPath, SafeFileHandle newDirFd, ReadOnlySpan<byte> newPath, uint flags);

    [LibraryImport("libc", EntryPoint = "linkat", SetLastError = true)]
    public static partial int LinkAt(int oldDirFd, ReadOnlySpan<byte> oldPath, SafeFileHandle newDirFd, ReadOnlySpan<byte> newPath, int flags);

    [LibraryImport("libc", EntryPoint = "faccessat", SetLastError = true)]
    public static partial int FAccessAt(int dirFd, ReadOnlySpan<byte> path, int mode, int flags);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    public static partial int FSync(SafeFileHandle fd);

    [LibraryImport("libc", EntryPoint = "fdatasync", SetLastError = true)]
    public static partial int FDataSync(SafeFileHandle fd);

    [LibraryImport("libc", EntryPoint = "fallocate64", SetLastError = true)]
    public static partial int FAllocate(SafeFileHandle fd, int mode, long offset, long length);

    [LibraryImport("libc", EntryPoint = "copy_file_range", SetLastError = true)]
    public static partial nint CopyFileRange(SafeFileHandle fdIn, ref long offsetIn, SafeFileHandle fdOut, ref long offsetOut, nuint length, uint flags);

    [LibraryImport("libc", EntryPoint = "getdents64", SetLastError = true)]
    public static partial nint GetDents64(SafeFileHandle fd, Span<byte> buffer, nuint size);

    [LibraryImport("libc", EntryPoint = "fstatfs64", SetLastError = true)]
    public static partial int FStatFs(SafeFileHandle fd, out StatFs result);

    [LibraryImport("libc", EntryPoint = "umask")]
    public static partial uint Umask(uint mask);

    /// <summary>struct statfs on 64-bit Linux (every field a long except the fsid pair).</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct StatFs
    {
        public long Type;
        public long BlockSize;
        public ulong Blocks;
        public ulong BlocksFree;
        public ulong BlocksAvailable;
        public ulong Files;
        public ulong FilesFree;
        public long FsId;
        public long NameLength;
        public long FragmentSize;
        public long Flags;
        private long _spare0, _spare1, _spare2, _spare3;
    }
}
