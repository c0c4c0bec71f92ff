using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;
using Nydus.Actors.Interop;
using Xunit;

namespace Nydus.Actors.Tests.Support;

/// <summary>
/// Plain syscalls on paths for tests that must see the exact errno a program would see (.NET's exceptions
/// do not carry it), plus lstat through statx.
/// </summary>
internal static partial class FusePosix
{
    [LibraryImport("libc", EntryPoint = "mkdir", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int MkdirNative(string path, uint mode);

    [LibraryImport("libc", EntryPoint = "unlink", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int UnlinkNative(string path);

    [LibraryImport("libc", EntryPoint = "rmdir", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int RmdirNative(string path);

    [LibraryImport("libc", EntryPoint = "lchown", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int LchownNative(string path, uint uid, uint gid);

    [LibraryImport("libc", EntryPoint = "link", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int LinkNative(string existing, string created);

    [LibraryImport("libc", EntryPoint = "rename", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int RenameNative(string from, string to);

    [LibraryImport("libc", EntryPoint = "lsetxattr", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int LSetXattrNative(string path, string name, byte[] value, nuint size, int flags);

    [LibraryImport("libc", EntryPoint = "lgetxattr", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial nint LGetXattrNative(string path, string name, byte[]? value, nuint size);

    [LibraryImport("libc", EntryPoint = "llistxattr", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial nint LListXattrNative(string path, byte[]? list, nuint size);

    public static Errno Mkdir(string path, uint mode = 0x1ED /* 0755 */) => Result(MkdirNative(path, mode));

    public static Errno Unlink(string path) => Result(UnlinkNative(path));

    public static Errno Rmdir(string path) => Result(RmdirNative(path));

    public static Errno Chown(string path, uint uid, uint gid) => Result(LchownNative(path, uid, gid));

    public static Errno Link(string existing, string created) => Result(LinkNative(existing, created));

    public static Errno Rename(string from, string to) => Result(RenameNative(from, to));

    public static Errno SetXattr(string path, string name, byte[] value) => Result(LSetXattrNative(path, name, value, (nuint)value.Length, 0));

    /// <summary>open(2) with the given flags; closes at once on success.</summary>
    public static Errno Open(string path, int flags, uint mode = 0x1A4 /* 0644 */)
    {
        SafeFileHandle? handle = Libc.Own(Libc.Open(PathBytes.FromString(path), flags | Libc.O_CLOEXEC, mode));
        if (handle is null)
        {
            return Libc.LastErrno;
        }

        handle.Dispose();
        return Errno.Success;
    }

    /// <summary>lstat(2) as statx.</summary>
    public static Errno LStat(string path, out Statx stat)
    {
        stat = default;
        SafeFileHandle? handle = Libc.Own(Libc.Open(PathBytes.FromString(path), Libc.O_PATH | Libc.O_NOFOLLOW | Libc.O_CLOEXEC, 0));
        if (handle is null)
        {
            return Libc.LastErrno;
        }

        using (handle)
        {
            return Libc.StatxAt(handle, PathBytes.Empty, Libc.AT_EMPTY_PATH | Libc.AT_SYMLINK_NOFOLLOW, Libc.STATX_BASIC_STATS, out stat) == 0
                ? Errno.Success
                : Libc.LastErrno;
        }
    }

    /// <summary>All extended attributes of a path (not following symlinks), sorted by name.</summary>
    public static SortedDictionary<string, string> Xattrs(string path)
    {
        var result = new SortedDictionary<string, string>(StringComparer.Ordinal);
        nint size = LListXattrNative(path, null, 0);
        if (size <= 0)
        {
            return result;
        }

        var list = new byte[size];
        size = LListXattrNative(path, list, (nuint)list.Length);
        foreach (string name in System.Text.Encoding.UTF8.GetString(list, 0, (int)size).Split('\0', StringSplitOptions.RemoveEmptyEntries))
        {
            nint valueSize = LGetXattrNative(path, name, null, 0);
            var value = new byte[Math.Max(0, valueSize)];
            valueSize = LGetXattrNative(path, name, value, (nuint)value.Length);
            result[name] = Convert.ToHexString(value, 0, (int)Math.Max(0, valueSize));
        }

        return result;
    }

    private static Errno Result(int result) => result == 0 ? Errno.Success : Libc.LastErrno;
}

internal static partial class FusePosix
{
    [LibraryImport("libc", EntryPoint = "pipe2", SetLastError = true)]
    private static unsafe partial int Pipe2(int* fds, int flags);

    /// <summary>A pipe (read end, write end), close-on-exec.</summary>
    public static unsafe (SafeFileHandle Read, SafeFileHandle Write) Pipe()
    {
        int* fds = stackalloc int[2];
        Assert.Equal(0, Pipe2(fds, Libc.O_CLOEXEC));
        return (new SafeFileHandle(fds[0], ownsHandle: true), new SafeFileHandle(fds[1], ownsHandle: true));
    }
}
