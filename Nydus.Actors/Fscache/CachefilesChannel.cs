using System.Text;
using Microsoft.Win32.SafeHandles;
using Nydus.Actors.Interop;

namespace Nydus.Actors.Fscache;

/// <summary>
/// What the real and the simulated device share, in one place: the descriptor (the one a live upgrade hands over),
/// the eventfd that stops the readers, the poll-then-read loop, command writes, and the two ways a session begins:
/// a new cache (<c>dir</c>, <c>tag</c>, <c>bind ondemand</c>) or a predecessor's descriptor, adopted as it is (the
/// successor writes <c>restore</c> itself, once its predecessor has stopped reading: see FscacheServiceActor).
/// Subclasses say only how one message is taken off the descriptor and how a read is completed.
/// </summary>
public abstract class CachefilesChannel : ICachefilesDevice
{
    private readonly SafeFileHandle _stop;

    protected CachefilesChannel(SafeFileHandle handle, string name)
    {
        Handle = handle;
        Name = name;
        int fd = Libc.EventFd(0, Libc.EFD_CLOEXEC | Libc.EFD_NONBLOCK);
        if (fd < 0) throw new IOException($"eventfd failed: {Libc.LastErrno}");
        _stop = new SafeFileHandle(fd, ownsHandle: true);
    }

    public SafeFileHandle Handle { get; }

    /// <summary>For messages: the device path or the simulation's socket variable.</summary>
    protected string Name { get; }

    public int Read(Span<byte> buffer)
    {
        while (true)
        {
            if (!WaitReadable()) return 0;
            int n = TryReceive(buffer);
            if (n > 0) return n;
        }
    }

    /// <summary>Takes one message off the readable descriptor: its length, or -1 when there was none after all
    /// (another worker took it). Throws <see cref="IOException"/> when the channel failed.</summary>
    protected abstract int TryReceive(Span<byte> buffer);

    public abstract void CompleteRead(SafeFileHandle objectFd, uint messageId);

    public void Write(string command)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(command);
        nint n;
        do n = Libc.WriteFrom(Handle, bytes);
        while (n < 0 && Libc.LastErrno == Errno.EINTR);
        if (n < 0) throw new IOException($"writing \"{command}\" to {Name} failed: {Libc.LastErrno}");
        if (n != bytes.Length) throw new IOException($"writing \"{command}\" to {Name}: only {n} of {bytes.Length} bytes taken");
    }

    public virtual Errno FileCommand(string command)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(command);
        nint n;
        do n = Libc.WriteFrom(Handle, bytes);
        while (n < 0 && Libc.LastErrno == Errno.EINTR);
        return n < 0 ? Libc.LastErrno : Errno.Success;
    }

    public void Wake() => Libc.SignalEvent(_stop);

    /// <summary>Upstream's session setup on a new channel: <c>dir</c>, <c>tag</c> when given, <c>bind ondemand</c>;
    /// the channel is disposed when any of them is refused.</summary>
    protected static T Bind<T>(T channel, string cacheDir, string? tag) where T : CachefilesChannel
    {
        try
        {
            channel.Write(CachefilesCommands.Dir(cacheDir));
            if (!string.IsNullOrEmpty(tag)) channel.Write(CachefilesCommands.Tag(tag));
            channel.Write(CachefilesCommands.BindOnDemand);
            return channel;
        }
        catch
        {
            channel.Dispose();
            throw;
        }
    }

    /// <summary>True when the descriptor is readable (or failed: the read says how), false once stopped.</summary>
    private bool WaitReadable()
    {
        while (true)
        {
            var errno = Libc.PollPair(Handle, _stop, out short deviceEvents, out short stopEvents);
            if (errno == Errno.EINTR) continue;
            if (errno != Errno.Success) throw new IOException($"poll on {Name} failed: {errno}");
            if (stopEvents != 0) return false;
            if (deviceEvents != 0) return true;
        }
    }

    public virtual void Dispose()
    {
        Handle.Dispose();
        _stop.Dispose();
        GC.SuppressFinalize(this);
    }
}
