using System.Text;
using Microsoft.Win32.SafeHandles;
using Nydus.Actors.Interop;

namespace Nydus.Actors.Fscache;

/// <summary>
/// The kernel's <c>/dev/cachefiles</c> (Documentation/filesystems/caching/cachefiles.rst, on-demand read): opened
/// non-blocking and bound (<see cref="OpenAndBind"/>), or a predecessor's descriptor after a takeover
/// (<see cref="Adopt"/>). Not exercised by the tests: this machine's kernel has no cachefiles module (see README, fscache).
/// </summary>
public sealed class CachefilesDevice : CachefilesChannel
{
    public const string DefaultPath = "/dev/cachefiles";

    private CachefilesDevice(SafeFileHandle device) : base(device, DefaultPath)
    {
    }

    /// <summary>Opens and binds a new cache: <c>dir</c>, optional <c>tag</c>, <c>bind ondemand</c>.</summary>
    public static CachefilesDevice OpenAndBind(string cacheDir, string? tag, string path = DefaultPath)
    {
        int fd = Libc.Open(Encoding.UTF8.GetBytes(path + "\0"), Libc.O_RDWR | Libc.O_NONBLOCK | Libc.O_CLOEXEC, 0);
        if (fd < 0)
        {
            var errno = Libc.LastErrno;
            throw new IOException($"cannot open {path}: {errno} (is the cachefiles module loaded, with on-demand mode, and are we root?)");
        }

        return Bind(new CachefilesDevice(new SafeFileHandle(fd, ownsHandle: true)), cacheDir, tag);
    }

    /// <summary>A successor's device: the predecessor's descriptor (already bound; O_NONBLOCK is the shared open
    /// file's). <c>restore</c> is written later, when this daemon starts serving.</summary>
    public static CachefilesDevice Adopt(SafeFileHandle inherited) => new(inherited);

    protected override int TryReceive(Span<byte> buffer)
    {
        nint n = Libc.ReadInto(Handle, buffer);
        if (n > 0) return (int)n;
        // 0: an older driver's "nothing pending"; EAGAIN: another worker took the message.
        if (n == 0) return -1;
        var errno = Libc.LastErrno;
        if (errno is Errno.EAGAIN or Errno.EINTR) return -1;
        throw new IOException($"reading {DefaultPath} failed: {errno}");
    }

    public override void CompleteRead(SafeFileHandle objectFd, uint messageId)
    {
        if (Libc.Ioctl(objectFd, CachefilesCommands.ReadCompleteIoctl, messageId) < 0)
            throw new IOException($"CACHEFILES_IOC_READ_COMPLETE for request {messageId} failed: {Libc.LastErrno}");
    }
}
