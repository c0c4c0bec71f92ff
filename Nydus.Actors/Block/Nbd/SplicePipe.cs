using System.Net.Sockets;
using Microsoft.Win32.SafeHandles;
using Nydus.Actors.Interop;

namespace Nydus.Actors.Block.Nbd;

/// <summary>
/// A pipe that carries one read reply's data from a local file to a client's socket without copying it through
/// user memory: <see cref="Fill"/> splices the file range into the pipe (page references; a cold read waits for
/// the disk here, before the connection's send lock is taken), <see cref="Send"/> writes the reply header and
/// splices the pipe into the socket. One per request loop of a connection, made on its first such read. After any
/// failure the pipe may hold stray bytes: its owner disposes it and makes a new one.
/// </summary>
internal sealed class SplicePipe : IDisposable
{
    /// <summary>The pipe size asked for; the kernel may give less (fs.pipe-max-size, the user's pipe quota).</summary>
    private const int WantedCapacity = 1 << 20;

    /// <summary>How long one wait for the socket to drain lasts before the cancellation is checked again.</summary>
    private const int PollMilliseconds = 500;

    private readonly SafeFileHandle _readEnd;
    private readonly SafeFileHandle _writeEnd;

    private SplicePipe(SafeFileHandle readEnd, SafeFileHandle writeEnd, int capacity)
    {
        _readEnd = readEnd;
        _writeEnd = writeEnd;
        Capacity = capacity;
    }

    /// <summary>The most bytes one reply may carry through this pipe (a larger read goes the copying way).</summary>
    public int Capacity { get; }

    /// <returns>A new pipe, or null when none can be made (out of descriptors): the caller copies instead.</returns>
    public static SplicePipe? TryCreate()
    {
        if (Libc.CreatePipe(out SafeFileHandle readEnd, out SafeFileHandle writeEnd) != Errno.Success) return null;
        // A pipe holds 64 KiB unless told otherwise; nbdcopy asks 256 KiB per read.
        Libc.Fcntl(writeEnd, Libc.F_SETPIPE_SZ, WantedCapacity);
        int capacity = Libc.Fcntl(writeEnd, Libc.F_GETPIPE_SZ, 0);
        return new SplicePipe(readEnd, writeEnd, Math.Max(capacity, 0));
    }

    /// <summary>Puts <paramref name="length"/> bytes of <paramref name="file"/> from <paramref name="offset"/> in the pipe.</summary>
    /// <exception cref="IOException">The read failed or the file ended first.</exception>
    public unsafe void Fill(SafeFileHandle file, long offset, int length)
    {
        bool fileRef = false, pipeRef = false;
        try
        {
            file.DangerousAddRef(ref fileRef);
            _writeEnd.DangerousAddRef(ref pipeRef);
            int fd = (int)file.DangerousGetHandle(), pipe = (int)_writeEnd.DangerousGetHandle();
            long at = offset;
            for (int done = 0; done < length;)
            {
                nint n = Libc.Splice(fd, &at, pipe, null, (nuint)(length - done), Libc.SPLICE_F_MOVE);
                if (n < 0 && Libc.LastErrno == Errno.EINTR) continue;
                if (n < 0) throw new IOException($"splice of {length} bytes at {offset} from the file failed: {Libc.LastErrno}");
                if (n == 0) throw new IOException($"the file ends at {at}, inside the range [{offset}, {offset + length})");
                done += (int)n;
            }
        }
        finally
        {
            if (pipeRef) _writeEnd.DangerousRelease();
            if (fileRef) file.DangerousRelease();
        }
    }

    /// <summary>
    /// Sends <paramref name="header"/> and then the <paramref name="length"/> bytes <see cref="Fill"/> put in the
    /// pipe. The caller holds the connection's send lock. Blocks while the socket is full (waking every
    /// <see cref="PollMilliseconds"/> to honour <paramref name="cancellation"/>).
    /// </summary>
    /// <exception cref="IOException">The client is gone.</exception>
    public unsafe void Send(Socket socket, ReadOnlySpan<byte> header, int length, CancellationToken cancellation)
    {
        SafeSocketHandle handle = socket.SafeHandle;
        bool socketRef = false, pipeRef = false;
        try
        {
            handle.DangerousAddRef(ref socketRef);
            _readEnd.DangerousAddRef(ref pipeRef);
            int fd = (int)handle.DangerousGetHandle(), pipe = (int)_readEnd.DangerousGetHandle();
            fixed (byte* start = header)
            {
                for (int sent = 0; sent < header.Length;)
                {
                    // MSG_MORE: the header and the data leave together rather than as a small segment first.
                    nint n = Libc.Send(fd, start + sent, (nuint)(header.Length - sent), Libc.MSG_MORE | Libc.MSG_NOSIGNAL);
                    if (n < 0 && WaitIfBusy(fd, cancellation)) continue;
                    sent += (int)n;
                }
            }

            for (int done = 0; done < length;)
            {
                nint n = Libc.Splice(pipe, null, fd, null, (nuint)(length - done), Libc.SPLICE_F_MOVE);
                if (n < 0 && WaitIfBusy(fd, cancellation)) continue;
                if (n == 0) throw new IOException("the client closed the connection");
                done += (int)n;
            }
        }
        finally
        {
            if (pipeRef) _readEnd.DangerousRelease();
            if (socketRef) handle.DangerousRelease();
        }
    }

    /// <returns>True to retry after EINTR or once a full socket can take more; throws for any other error.</returns>
    private static bool WaitIfBusy(int fd, CancellationToken cancellation)
    {
        Errno error = Libc.LastErrno;
        if (error == Errno.EINTR) return true;
        if (error != Errno.EAGAIN) throw new IOException($"send to the client failed: {error}");
        // .NET keeps its sockets non-blocking: wait for room, a little at a time, so a stop is noticed.
        while (true)
        {
            cancellation.ThrowIfCancellationRequested();
            int events = Libc.PollWritable(fd, PollMilliseconds);
            if (events < 0 && Libc.LastErrno is var pollError && pollError != Errno.EINTR) throw new IOException($"poll of the client socket failed: {pollError}");
            if (events > 0) return true;
        }
    }

    public void Dispose()
    {
        _readEnd.Dispose();
        _writeEnd.Dispose();
    }
}
