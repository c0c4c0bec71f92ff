using System.Runtime.InteropServices;

namespace Nydus.Actors.Tests.Support;

/// <summary>The few libc calls the tree builder needs that .NET does not expose (mknod, lchown, xattrs, link).</summary>
internal static partial class TreeNative
{
    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int mknod(string path, uint mode, ulong dev);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int lchown(string path, uint uid, uint gid);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int link(string oldPath, string newPath);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int lsetxattr(string path, string name, byte[] value, nuint size, int flags);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial nint llistxattr(string path, byte[]? list, nuint size);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial nint lgetxattr(string path, string name, byte[]? value, nuint size);

    internal static void Check(int rc, string what)
    {
        if (rc != 0)
        {
            throw new IOException($"{what} failed: errno {Marshal.GetLastPInvokeError()}");
        }
    }

    /// <summary>glibc makedev: the Linux "new" dev_t encoding, truncated to 32 bits as EROFS and FUSE keep it.</summary>
    internal static uint MakeDev(uint major, uint minor) => (minor & 0xFF) | ((major & 0xFFF) << 8) | ((minor & ~0xFFu) << 12);
}
