using System.Runtime.InteropServices;

namespace Nydus.Actors.Interop;

/// <summary>Path-based extended attribute calls (O_PATH descriptors refuse the f*xattr family).</summary>
internal static partial class Libc
{
    [LibraryImport("libc", EntryPoint = "getxattr", SetLastError = true)]
    public static partial nint GetXattr(ReadOnlySpan<byte> path, ReadOnlySpan<byte> name, Span<byte> value, nuint size);

    [LibraryImport("libc", EntryPoint = "setxattr", SetLastError = true)]
    public static partial int SetXattr(ReadOnlySpan<byte> path, ReadOnlySpan<byte> name, ReadOnlySpan<byte> value, nuint size, int flags);

    [LibraryImport("libc", EntryPoint = "listxattr", SetLastError = true)]
    public static partial nint ListXattr(ReadOnlySpan<byte> path, Span<byte> list, nuint size);

    [LibraryImport("libc", EntryPoint = "removexattr", SetLastError = true)]
    public static partial int RemoveXattr(ReadOnlySpan<byte> path, ReadOnlySpan<byte> name);
}
