using Microsoft.Win32.SafeHandles;

namespace Nydus.Actors.Fscache;

/// <summary>
/// The daemon's end of the cachefiles on-demand channel: <see cref="CachefilesDevice"/> is the kernel's
/// <c>/dev/cachefiles</c>; <see cref="SimulatedCachefilesDevice"/> is the same conversation over a Unix socket with a
/// simulated kernel (this machine's kernel has no cachefiles module). Every method may be called from many threads.
/// </summary>
public interface ICachefilesDevice : IDisposable
{
    /// <summary>The device descriptor: what a live upgrade hands to the successor.</summary>
    SafeFileHandle Handle { get; }

    /// <summary>
    /// Blocks until one request arrives and copies it into <paramref name="buffer"/> (at least
    /// <see cref="CachefilesMessage.MaxSize"/> bytes); returns its length, or 0 once <see cref="Wake"/> was called.
    /// An OPEN's fd field names a descriptor now owned by the caller. Throws <see cref="IOException"/> when the
    /// device fails (closed by the kernel).
    /// </summary>
    int Read(Span<byte> buffer);

    /// <summary>Writes one command (<c>copen</c>, <c>restore</c>, configuration); <see cref="IOException"/> with the errno on failure.</summary>
    void Write(string command);

    /// <summary>
    /// A command about a cache file named relative to the calling thread's working directory, which the kernel
    /// resolves it in (<c>inuse NAME</c>, <c>cull NAME</c>): the errno the device answered, <see cref="Errno.Success"/>
    /// when it took it (<c>EBUSY</c>: the object is in use).
    /// </summary>
    Interop.Errno FileCommand(string command);

    /// <summary><c>CACHEFILES_IOC_READ_COMPLETE</c> on the object's anonymous fd: the READ <paramref name="messageId"/>
    /// is done (whatever was written to the object by then is what the kernel finds).</summary>
    void CompleteRead(SafeFileHandle objectFd, uint messageId);

    /// <summary>Makes every blocked and future <see cref="Read"/> return 0 (stopping the workers).</summary>
    void Wake();
}
