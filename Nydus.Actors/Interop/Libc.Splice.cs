using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Nydus.Actors.Interop;

/// <summary>pipe2(2), splice(2) and send(2): moving file pages to a socket without copying them through user memory.</summary>
internal static partial class Libc
{
    public const int F_SETPIPE_SZ = 1031;
    public const int F_GETPIPE_SZ = 1032;
    public const uint SPLICE_F_MOVE = 1;
    public const uint SPLICE_F_MORE = 4;
    public const int MSG_MORE = 0x8000;
    public const short POLLOUT = 0x4;

    [LibraryImport("libc", EntryPoint = "pipe2", SetLastError = true)]
    public static unsafe partial int Pipe2(int* fds, int flags);

    [LibraryImport("libc", EntryPoint = "splice", SetLastError = true)]
    public static unsafe partial nint Splice(int fdIn, long* offsetIn, int fdOut, long* offsetOut, nuint length, uint flags);

    [LibraryImport("libc", EntryPoint = "send", SetLastError = true)]
    public static unsafe partial nint Send(int socket, byte* buffer, nuint length, int flags);

    /// <summary>A close-on-exec pipe: (read end, write end).</summary>
    public static unsafe Errno CreatePipe(out SafeFileHandle readEnd, out SafeFileHandle writeEnd)
    {
        int* fds = stackalloc int[2];
        if (Pipe2(fds, O_CLOEXEC) < 0)
        {
            readEnd = writeEnd = null!;
            return LastErrno;
        }

        readEnd = new SafeFileHandle(fds[0], ownsHandle: true);
        writeEnd = new SafeFileHandle(fds[1], ownsHandle: true);
        return Errno.Success;
    }

    /// <summary>Waits up to <paramref name="timeoutMilliseconds"/> for <paramref name="fd"/> to accept writes.</summary>
    /// <returns>The returned poll events (0 on timeout), or -1 with <see cref="LastErrno"/>.</returns>
    public static unsafe int PollWritable(int fd, int timeoutMilliseconds)
    {
        PollFd poll = new() { Fd = fd, Events = POLLOUT };
        int result = Poll(&poll, 1, timeoutMilliseconds);
        return result < 0 ? -1 : poll.ReturnedEvents;
    }
}
