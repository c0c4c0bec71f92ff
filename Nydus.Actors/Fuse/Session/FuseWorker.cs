using Microsoft.Win32.SafeHandles;
using Nydus.Actors.Fuse.Ops;
using Nydus.Actors.Interop;
using Serilog;

namespace Nydus.Actors.Fuse.Session;

/// <summary>
/// One dedicated thread serving requests: wait for /dev/fuse or the stop event (its own epoll instance, the device
/// registered EPOLLEXCLUSIVE so one request wakes one idle worker, not all of them), read one request into its
/// pinned buffer, dispatch, write the reply. The worker owns a dup() of the session descriptor (same open file,
/// so the kernel queue is shared and nothing is lost if this copy closes) and never closes the original.
/// A worker starts parked: its thread runs and waits for the stop event only, and serves once <see cref="Arm"/> adds
/// the device to its epoll instance, so that a successor's start is one epoll_ctl per worker (issue 20: the thread's
/// creation and its first run happen before the takeover's start, outside the reader's stall).
/// </summary>
internal sealed class FuseWorker
{
    private static readonly ILogger Log = Serilog.Log.ForContext<FuseWorker>();

    private readonly int _generation;
    private readonly int _index;
    private readonly SafeFileHandle _device;
    private readonly FuseDispatcher _dispatcher;
    private readonly FuseInflight _inflight;
    private readonly Action<FuseWorkerExit> _onExit;
    private readonly Thread _thread;
    // Made on the creating thread, so that Arm can add the device while the worker waits in it; the worker's thread
    // disposes it as it ends (or Abandon, for a thread never started).
    private readonly ExclusiveWaiter _waiter;

    public FuseWorker(int generation, int index, SafeFileHandle device, SafeFileHandle stopEvent, FuseDispatcher dispatcher,
        FuseInflight inflight, string threadName, Action<FuseWorkerExit> onExit)
    {
        _generation = generation;
        _index = index;
        _device = device;
        _dispatcher = dispatcher;
        _inflight = inflight;
        _onExit = onExit;
        _waiter = new ExclusiveWaiter(stopEvent);
        _thread = new Thread(Run) { IsBackground = true, Name = threadName };
    }

    /// <summary>Starts the thread, parked until <see cref="Arm"/>.</summary>
    public void Start() => _thread.Start();

    /// <summary>From now on the worker reads requests from the device (a worker that has ended already is skipped:
    /// its exit was reported).</summary>
    /// <exception cref="IOException">epoll_ctl failed.</exception>
    public void Arm()
    {
        try
        {
            _waiter.AddDevice(_device);
        }
        catch (ObjectDisposedException)
        {
        }
    }

    /// <summary>Releases what a worker whose thread was never started holds.</summary>
    public void Abandon()
    {
        _waiter.Dispose();
        _device.Dispose();
    }

    public bool Join(TimeSpan timeout) => _thread.Join(timeout);

    private void Run()
    {
        FuseWorkerExit exit;
        try
        {
            exit = Serve();
        }
        catch (Exception exception)
        {
            Log.Error(exception, "FUSE worker {Worker} failed", _thread.Name);
            exit = new FuseWorkerExit(_generation, _index, FuseWorkerExitReason.Faulted, Errno.EIO, exception);
        }
        finally
        {
            _inflight.End(_index);
            _waiter.Dispose();
            _device.Dispose();
        }

        try
        {
            _onExit(exit);
        }
        catch (Exception exception)
        {
            Log.Error(exception, "FUSE worker {Worker} exit callback failed", _thread.Name);
        }
    }

    private FuseWorkerExit Serve()
    {
        int requestSize = Math.Max(_dispatcher.RequestBufferSize, Abi.FuseProtocol.MinReadBuffer);
        int replySize = _dispatcher.ReplyBufferSize;

        // One pinned buffer per worker, split in a request half and a reply half: the reply is built while
        // the request (names, WRITE data) is still being read.
        byte[] buffer = GC.AllocateUninitializedArray<byte>(requestSize + replySize, pinned: true);
        while (true)
        {
            Errno waitError = _waiter.Wait(out bool deviceReady, out bool stopped);
            if (waitError != Errno.Success)
            {
                if (waitError == Errno.EINTR)
                {
                    continue;
                }

                return Exit(FuseWorkerExitReason.Faulted, waitError);
            }

            if (stopped)
            {
                return Exit(FuseWorkerExitReason.Stopped, Errno.Success);
            }

            if (!deviceReady)
            {
                continue;
            }

            Span<byte> request = buffer.AsSpan(0, requestSize);
            nint read = Libc.ReadInto(_device, request);
            if (read < 0)
            {
                Errno errno = Libc.LastErrno;
                switch (errno)
                {
                    case Errno.EINTR:
                    case Errno.EAGAIN: // another worker took the request this wake-up announced
                    case Errno.ENOENT: // the request was interrupted before it could be read
                        continue;
                    case Errno.ENODEV:
                        return Exit(FuseWorkerExitReason.Unmounted, errno);
                    default:
                        return Exit(FuseWorkerExitReason.Faulted, errno);
                }
            }

            if (read == 0)
            {
                // /dev/fuse never reports end of file; a descriptor that does is not a FUSE connection.
                return Exit(FuseWorkerExitReason.Faulted, Errno.EIO);
            }

            Span<byte> reply = buffer.AsSpan(requestSize, replySize);
            // In flight from here until its reply is written (GET /api/v1/metrics/inflight).
            _inflight.Begin(_index, request[..(int)read]);
            int replyLength = _dispatcher.Dispatch(request[..(int)read], reply);
            bool written = replyLength <= 0 || Libc.WriteFrom(_device, reply[..replyLength]) >= 0;
            _inflight.End(_index);
            if (written) _dispatcher.AfterReplyWritten();
            if (!written)
            {
                Errno errno = Libc.LastErrno;
                if (errno == Errno.ENODEV)
                {
                    return Exit(FuseWorkerExitReason.Unmounted, errno);
                }

                // ENOENT: the kernel no longer waits for this request (interrupted or aborted). Others mean
                // the reply was malformed, which is worth a log line but not the worker.
                if (errno != Errno.ENOENT)
                {
                    Log.Warning("FUSE reply of {Length} bytes rejected by the kernel: {Errno}", replyLength, errno);
                }
            }
        }
    }

    private FuseWorkerExit Exit(FuseWorkerExitReason reason, Errno errno) => new(_generation, _index, reason, errno);
}
