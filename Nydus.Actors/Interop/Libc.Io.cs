using Microsoft.Win32.SafeHandles;

namespace Nydus.Actors.Interop;

/// <summary>Span-based wrappers over read/write/pread/pwrite and poll, so callers outside Interop stay safe code.</summary>
internal static partial class Libc
{
    /// <summary>read(2) into <paramref name="buffer"/>; returns bytes read or -1 (see <see cref="LastErrno"/>).</summary>
    public static unsafe nint ReadInto(SafeFileHandle fd, Span<byte> buffer)
    {
        fixed (byte* pointer = buffer)
        {
            return Read(fd, pointer, (nuint)buffer.Length);
        }
    }

    /// <summary>write(2) of <paramref name="data"/>; returns bytes written or -1.</summary>
    public static unsafe nint WriteFrom(SafeFileHandle fd, ReadOnlySpan<byte> data)
    {
        fixed (byte* pointer = data)
        {
            return Write(fd, pointer, (nuint)data.Length);
        }
    }

    public static unsafe nint PReadInto(SafeFileHandle fd, Span<byte> buffer, long offset)
    {
        fixed (byte* pointer = buffer)
        {
            return PRead(fd, pointer, (nuint)buffer.Length, offset);
        }
    }

    public static unsafe nint PWriteFrom(SafeFileHandle fd, ReadOnlySpan<byte> data, long offset)
    {
        fixed (byte* pointer = data)
        {
            return PWrite(fd, pointer, (nuint)data.Length, offset);
        }
    }

    /// <summary>
    /// Blocks until <paramref name="device"/> or <paramref name="stopEvent"/> is readable (or in error).
    /// </summary>
    /// <returns>0 on success, otherwise the errno of poll(2).</returns>
    public static unsafe Errno PollPair(SafeFileHandle device, SafeFileHandle stopEvent, out short deviceEvents, out short stopEvents)
    {
        bool deviceRef = false, stopRef = false;
        try
        {
            device.DangerousAddRef(ref deviceRef);
            stopEvent.DangerousAddRef(ref stopRef);
            PollFd* fds = stackalloc PollFd[2];
            fds[0] = new PollFd { Fd = (int)device.DangerousGetHandle(), Events = POLLIN };
            fds[1] = new PollFd { Fd = (int)stopEvent.DangerousGetHandle(), Events = POLLIN };
            int result = Poll(fds, 2, -1);
            deviceEvents = fds[0].ReturnedEvents;
            stopEvents = fds[1].ReturnedEvents;
            return result < 0 ? LastErrno : Errno.Success;
        }
        finally
        {
            if (deviceRef)
            {
                device.DangerousRelease();
            }

            if (stopRef)
            {
                stopEvent.DangerousRelease();
            }
        }
    }

    /// <summary>Adds 1 to an eventfd counter, making it readable for every poller until it is read.</summary>
    public static unsafe Errno SignalEvent(SafeFileHandle eventFd)
    {
        ulong one = 1;
        return Write(eventFd, (byte*)&one, sizeof(ulong)) == sizeof(ulong) ? Errno.Success : LastErrno;
    }
}
