using System.Text;
using Microsoft.Win32.SafeHandles;
using Nydus.Actors.Interop;

namespace Nydus.Actors.Fscache;

/// <summary>
/// The kernel's <c>/dev/cachefiles</c> (Documentation/filesystems/caching/cachefiles.rst, on-demand read): opened
/// non-blocking, configured with <c>dir</c>, <c>tag</c> and <c>bind ondemand</c> (or, after a takeover, the
/// predecessor's descriptor and <c>restore</c>). Readers poll the device with an eventfd that stops them.
/// Not exercised by the tests: this machine's kernel has no cachefiles module (see README, fscache).
/// </summary>
public sealed class CachefilesDevice : ICachefilesDevice
{
    public const string DefaultPath = "/dev/cachefiles";

    private readonly SafeFileHandle _device;
    private readonly SafeFileHandle _stop;

    private CachefilesDevice(SafeFileHandle device)
    {
        _device = device;
        _stop = CachefilesPolling.CreateStopEvent();
    }

    public SafeFileHandle Handle => _device;

    /// <summary>Opens and binds a new cache: <c>dir</c>, optional <c>tag</c>, <c>bind ondemand</c>.</summary>
    public static CachefilesDevice OpenAndBind(string cacheDir, string? tag, string path = DefaultPath)
    {
        int fd = Libc.Open(Encoding.UTF8.GetBytes(path + "\0"), Libc.O_RDWR | Libc.O_NONBLOCK | Libc.O_CLOEXEC, 0);
        if (fd < 0)
        {
            var errno = Libc.LastErrno;
            throw new IOException($"cannot open {path}: {errno} (is the cachefiles module loaded, with on-demand mode, and are we root?)");
        }

        var device = new CachefilesDevice(new SafeFileHandle(fd, ownsHandle: true));
        try
        {
            CachefilesPolling.Bind(device, cacheDir, tag);
            return device;
        }
        catch
        {
            device.Dispose();
            throw;
        }
    }

    /// <summary>A successor's device: the predecessor's descriptor, then <c>restore</c> so unanswered requests come again.</summary>
    public static CachefilesDevice Adopt(SafeFileHandle inherited)
    {
        var device = new CachefilesDevice(inherited);
        device.Write(CachefilesCommands.Restore);
        return device;
    }

    public int Read(Span<byte> buffer)
    {
        while (true)
        {
            if (!CachefilesPolling.WaitReadable(_device, _stop)) return 0;
            nint n = Libc.ReadInto(_device, buffer);
            if (n > 0) return (int)n;
            // 0: an older driver's "nothing pending"; EAGAIN: another worker took the message.
            if (n == 0) continue;
            var errno = Libc.LastErrno;
            if (errno is Errno.EAGAIN or Errno.EINTR) continue;
            throw new IOException($"reading {DefaultPath} failed: {errno}");
        }
    }

    public void Write(string command) => CachefilesPolling.WriteCommand(_device, command, DefaultPath);

    public void CompleteRead(SafeFileHandle objectFd, uint messageId)
    {
        if (Libc.Ioctl(objectFd, CachefilesCommands.ReadCompleteIoctl, messageId) < 0)
            throw new IOException($"CACHEFILES_IOC_READ_COMPLETE for request {messageId} failed: {Libc.LastErrno}");
    }

    public void Wake() => Libc.SignalEvent(_stop);

    public void Dispose()
    {
        _device.Dispose();
        _stop.Dispose();
    }
}

/// <summary>What the real and the simulated device share: the stop event, polling, command writes, binding.</summary>
internal static class CachefilesPolling
{
    public static SafeFileHandle CreateStopEvent()
    {
        int fd = Libc.EventFd(0, Libc.EFD_CLOEXEC | Libc.EFD_NONBLOCK);
        if (fd < 0) throw new IOException($"eventfd failed: {Libc.LastErrno}");
        return new SafeFileHandle(fd, ownsHandle: true);
    }

    /// <summary>True when the device is readable (or failed: the read says how), false when stopped.</summary>
    public static bool WaitReadable(SafeFileHandle device, SafeFileHandle stop)
    {
        while (true)
        {
            var errno = Libc.PollPair(device, stop, out short deviceEvents, out short stopEvents);
            if (errno == Errno.EINTR) continue;
            if (errno != Errno.Success) throw new IOException($"poll on the cachefiles device failed: {errno}");
            if (stopEvents != 0) return false;
            if (deviceEvents != 0) return true;
        }
    }

    public static void WriteCommand(SafeFileHandle device, string command, string name)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(command);
        nint n;
        do n = Libc.WriteFrom(device, bytes);
        while (n < 0 && Libc.LastErrno == Errno.EINTR);
        if (n < 0) throw new IOException($"writing \"{command}\" to {name} failed: {Libc.LastErrno}");
        if (n != bytes.Length) throw new IOException($"writing \"{command}\" to {name}: only {n} of {bytes.Length} bytes taken");
    }

    /// <summary>Upstream's session setup: <c>dir</c>, <c>tag</c> when given, <c>bind ondemand</c>.</summary>
    public static void Bind(ICachefilesDevice device, string cacheDir, string? tag)
    {
        device.Write(CachefilesCommands.Dir(cacheDir));
        if (!string.IsNullOrEmpty(tag)) device.Write(CachefilesCommands.Tag(tag));
        device.Write(CachefilesCommands.BindOnDemand);
    }
}
