using Microsoft.Win32.SafeHandles;

namespace Nydus.Actors.Interop;

/// <summary>
/// What one of several threads serving the same descriptor waits on: that descriptor, registered with
/// EPOLLEXCLUSIVE, and a stop eventfd, registered plainly. With poll(2) every idle thread wakes for every
/// request and all but one find nothing to read (EAGAIN); with one epoll instance per thread and the exclusive flag
/// the kernel wakes one idle waiter per event (a waiter busy serving is skipped: its instance has no thread
/// waiting, so the wake-up goes on to the next), while the stop event still wakes them all.
/// </summary>
internal sealed class ExclusiveWaiter : IDisposable
{
    private const ulong DeviceTag = 1;
    private const ulong StopTag = 2;

    private readonly SafeFileHandle _epoll;

    /// <summary>A waiter for the stop event only until <see cref="AddDevice"/>: a thread may wait in it before it is
    /// to serve (a FUSE worker parked before a takeover's start).</summary>
    /// <param name="stopEvent">Wakes every waiter; must stay open while this waiter is used.</param>
    /// <exception cref="IOException">epoll_create1 or epoll_ctl failed (e.g. out of descriptors).</exception>
    public ExclusiveWaiter(SafeFileHandle stopEvent)
    {
        _epoll = Libc.Own(Libc.EpollCreate(Libc.EPOLL_CLOEXEC)) ?? throw new IOException($"epoll_create1 failed: {Libc.LastErrno}");
        try
        {
            Add(stopEvent, Libc.EPOLLIN, StopTag);
        }
        catch
        {
            _epoll.Dispose();
            throw;
        }
    }

    /// <summary>Adds the device, waited for exclusively; it must stay open while this waiter is used. Safe while
    /// another thread waits in <see cref="Wait"/>: epoll_wait reports it from then on.</summary>
    /// <exception cref="IOException">epoll_ctl failed.</exception>
    public void AddDevice(SafeFileHandle device) => Add(device, Libc.EPOLLIN | Libc.EPOLLEXCLUSIVE, DeviceTag);

    /// <summary>Blocks until the device or the stop event is ready (readable, or in error).</summary>
    /// <returns>0, or the errno of epoll_wait (EINTR: call again).</returns>
    public unsafe Errno Wait(out bool deviceReady, out bool stopped)
    {
        deviceReady = false;
        stopped = false;
        int size = Libc.EpollEventSize;
        byte* events = stackalloc byte[2 * size];
        bool epollRef = false;
        int count;
        try
        {
            _epoll.DangerousAddRef(ref epollRef);
            count = Libc.EpollWait((int)_epoll.DangerousGetHandle(), events, 2, -1);
        }
        finally
        {
            if (epollRef) _epoll.DangerousRelease();
        }

        if (count < 0) return Libc.LastErrno;
        for (int i = 0; i < count; i++)
        {
            ulong tag = *(ulong*)(events + i * size + Libc.EpollEventDataOffset);
            if (tag == StopTag) stopped = true;
            else if (tag == DeviceTag) deviceReady = true;
        }

        return Errno.Success;
    }

    public void Dispose() => _epoll.Dispose();

    private unsafe void Add(SafeFileHandle fd, uint events, ulong tag)
    {
        byte* epollEvent = stackalloc byte[16];
        *(uint*)epollEvent = events;
        *(ulong*)(epollEvent + Libc.EpollEventDataOffset) = tag;
        bool fdRef = false, epollRef = false;
        try
        {
            fd.DangerousAddRef(ref fdRef);
            _epoll.DangerousAddRef(ref epollRef);
            if (Libc.EpollCtl((int)_epoll.DangerousGetHandle(), Libc.EPOLL_CTL_ADD, (int)fd.DangerousGetHandle(), epollEvent) < 0)
                throw new IOException($"epoll_ctl(ADD) failed: {Libc.LastErrno}");
        }
        finally
        {
            if (fdRef) fd.DangerousRelease();
            if (epollRef) _epoll.DangerousRelease();
        }
    }
}
