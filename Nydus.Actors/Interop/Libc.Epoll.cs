using System.Runtime.InteropServices;

namespace Nydus.Actors.Interop;

/// <summary>epoll(7), for waiters that must not all wake for one event (EPOLLEXCLUSIVE).</summary>
internal static partial class Libc
{
    public const uint EPOLLIN = 0x1;
    public const uint EPOLLERR = 0x8;
    public const uint EPOLLHUP = 0x10;
    public const uint EPOLLEXCLUSIVE = 1u << 28;
    public const int EPOLL_CTL_ADD = 1;
    public const int EPOLL_CLOEXEC = 0x80000;

    /// <summary>
    /// Size of <c>struct epoll_event</c>: the kernel packs it (u32 events, u64 data: 12 bytes) on x86-64 only;
    /// elsewhere the u64 is naturally aligned (16 bytes).
    /// </summary>
    public static readonly int EpollEventSize = RuntimeInformation.ProcessArchitecture == Architecture.X64 ? 12 : 16;

    /// <summary>Offset of the u64 <c>data</c> member in <c>struct epoll_event</c>.</summary>
    public static readonly int EpollEventDataOffset = RuntimeInformation.ProcessArchitecture == Architecture.X64 ? 4 : 8;

    [LibraryImport("libc", EntryPoint = "epoll_create1", SetLastError = true)]
    public static partial int EpollCreate(int flags);

    [LibraryImport("libc", EntryPoint = "epoll_ctl", SetLastError = true)]
    public static unsafe partial int EpollCtl(int epollFd, int operation, int fd, byte* epollEvent);

    [LibraryImport("libc", EntryPoint = "epoll_wait", SetLastError = true)]
    public static unsafe partial int EpollWait(int epollFd, byte* events, int maxEvents, int timeoutMilliseconds);
}
