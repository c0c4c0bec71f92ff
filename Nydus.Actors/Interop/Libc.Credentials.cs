using System.Runtime.InteropServices;

namespace Nydus.Actors.Interop;

/// <summary>
/// setfsuid/setfsgid. The kernel keeps the filesystem ids per thread (glibc does not broadcast these two
/// to other threads), so a FUSE worker can act as the caller for one request without affecting the others.
/// </summary>
internal static partial class Libc
{
    [LibraryImport("libc", EntryPoint = "setfsuid")]
    public static partial int SetFsUid(uint uid);

    [LibraryImport("libc", EntryPoint = "setfsgid")]
    public static partial int SetFsGid(uint gid);

    [LibraryImport("libc", EntryPoint = "geteuid")]
    public static partial uint GetEffectiveUid();

    [LibraryImport("libc", EntryPoint = "getegid")]
    public static partial uint GetEffectiveGid();
}
