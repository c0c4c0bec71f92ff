using Microsoft.Win32.SafeHandles;

namespace Nydus.Actors.Interop;

/// <summary>
/// The type and size of a file named by a request, looked at (stat, following links) before anything opens or reads
/// it: a FIFO blocks its opener until someone writes, and a device such as /dev/zero never ends.
/// </summary>
public static class InputFile
{
    internal static readonly SafeFileHandle CurrentDirectory = new((IntPtr)Libc.AT_FDCWD, ownsHandle: false);

    /// <summary>stat(2) of <paramref name="path"/>: false with <paramref name="errno"/> when it fails.</summary>
    public static bool TryStat(string path, out uint fileType, out long size, out int errno)
    {
        fileType = 0;
        size = 0;
        errno = 0;
        if (Libc.StatxAt(CurrentDirectory, PathBytes.FromString(path), 0, Libc.STATX_BASIC_STATS, out Statx stat) != 0)
        {
            errno = System.Runtime.InteropServices.Marshal.GetLastPInvokeError();
            return false;
        }
        fileType = stat.FileType;
        size = (long)stat.Size;
        return true;
    }

    public static bool Exists(string path) => TryStat(path, out _, out _, out _);

    public static bool IsSocket(string path) => TryStat(path, out var type, out _, out _) && type == FileModes.S_IFSOCK;

    /// <summary>Null when <paramref name="path"/> is a regular file (its size in <paramref name="size"/>); else what it
    /// is instead ("does not exist", "is a FIFO, not a regular file", ...).</summary>
    public static string? NotRegular(string path, out long size)
    {
        if (!TryStat(path, out var type, out size, out var errno))
            return errno == 2 ? DoesNotExist : $"cannot be looked at (errno {errno})";
        return type switch
        {
            FileModes.S_IFREG => null,
            FileModes.S_IFDIR => "is a directory, not a regular file",
            FileModes.S_IFIFO => "is a FIFO, not a regular file",
            FileModes.S_IFCHR => "is a character device, not a regular file",
            FileModes.S_IFBLK => "is a block device, not a regular file",
            FileModes.S_IFSOCK => "is a socket, not a regular file",
            _ => "is not a regular file",
        };
    }

    /// <summary>What <see cref="NotRegular"/> says of a missing file.</summary>
    public const string DoesNotExist = "does not exist";
}
