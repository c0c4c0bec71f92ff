using Microsoft.Win32.SafeHandles;
using Nydus.Actors.Fuse.Ops;
using Nydus.Actors.Interop;
using Serilog;

namespace Nydus.Actors.VirtioFs;

/// <summary>
/// Serves one virtqueue on a dedicated thread, as a FuseWorker serves /dev/fuse: poll(kick eventfd, stop eventfd),
/// then take every chain the guest made available, copy its readable part (the FUSE request) into the worker's
/// request buffer, run the shared <see cref="FuseDispatcher"/>, copy the reply into the chain's writable part, return
/// the chain in the used ring and signal the call eventfd. A malformed chain goes back with no reply; inconsistent
/// rings stop this queue (the guest then needs a reset) but never the daemon.
/// </summary>
internal sealed class VirtioFsQueueWorker
{
    private static readonly ILogger Log = Serilog.Log.ForContext<VirtioFsQueueWorker>();

    private readonly int _queueIndex;
    private readonly SplitVirtqueue _queue;
    private readonly GuestMemory _memory;
    private readonly SafeFileHandle _kick;
    private readonly VringCall _call;
    private readonly FuseDispatcher _dispatcher;
    private readonly VirtioFsCounters _counters;
    private readonly SafeFileHandle _stop;
    private readonly Thread _thread;

    /// <summary>Set by <see cref="Stop"/> before it wakes the worker: a drain stops between two chains, so a stop
    /// (GET_VRING_BASE, a reset, the VMM gone) waits for the request being served, not for the rest of a full ring.</summary>
    private volatile bool _stopRequested;

    public VirtioFsQueueWorker(int queueIndex, SplitVirtqueue queue, GuestMemory memory, SafeFileHandle kick, VringCall call,
        FuseDispatcher dispatcher, VirtioFsCounters counters)
    {
        _queueIndex = queueIndex;
        _queue = queue;
        _memory = memory;
        _kick = kick;
        _call = call;
        _dispatcher = dispatcher;
        _counters = counters;
        _stop = Libc.Own(Libc.EventFd(0, Libc.EFD_CLOEXEC | Libc.EFD_NONBLOCK)) ?? throw new IOException($"eventfd failed: {Libc.LastErrno}");
        _thread = new Thread(Run) { IsBackground = true, Name = $"virtiofs-q{queueIndex}" };
    }

    /// <summary>Where the queue stopped in the available ring (GET_VRING_BASE), valid once <see cref="Stop"/> returned.</summary>
    public ushort NextAvail => _queue.NextAvail;

    public void Start() => _thread.Start();

    /// <summary>Wakes the worker and waits for it (bounded: a request stuck in the file system is given 10 s).</summary>
    public bool Stop()
    {
        _stopRequested = true;
        Libc.SignalEvent(_stop);
        bool joined = _thread.Join(TimeSpan.FromSeconds(10));
        if (joined) _stop.Dispose();
        else Log.Warning("virtio-fs queue {Queue} worker did not stop within 10 s", _queueIndex);
        return joined;
    }

    private void Run()
    {
        try
        {
            Serve();
        }
        catch (Exception exception)
        {
            // Never the daemon: the queue stops, the frontend sees no more replies on it until it resets it.
            Log.Error(exception, "virtio-fs queue {Queue} worker failed", _queueIndex);
        }
    }

    private void Serve()
    {
        int requestSize = _dispatcher.RequestBufferSize;
        byte[] request = GC.AllocateUninitializedArray<byte>(requestSize);
        byte[] reply = GC.AllocateUninitializedArray<byte>(_dispatcher.ReplyBufferSize);
        var chain = new DescriptorChain();
        while (true)
        {
            // Drain first: requests made available before the kick fd was handed over were never kicked.
            if (!Drain(chain, request, reply)) return;
            Errno pollError = Libc.PollPair(_kick, _stop, out short kickEvents, out short stopEvents);
            if (pollError == Errno.EINTR) continue;
            if (pollError != Errno.Success)
            {
                Log.Error("virtio-fs queue {Queue}: poll failed: {Errno}", _queueIndex, pollError);
                return;
            }

            if (stopEvents != 0) return;
            if ((kickEvents & (Libc.POLLERR | Libc.POLLHUP | Libc.POLLNVAL)) != 0)
            {
                Log.Warning("virtio-fs queue {Queue}: kick descriptor failed ({Events}); queue stopped", _queueIndex, kickEvents);
                return;
            }

            if (kickEvents != 0) Libc.ConsumeEvent(_kick);
        }
    }

    /// <returns>False when the queue is broken and must stop.</returns>
    private bool Drain(DescriptorChain chain, byte[] request, byte[] reply)
    {
        bool served = false;
        try
        {
            // Chains not taken stay in the available ring; the base GET_VRING_BASE reports starts the next worker there.
            while (!_stopRequested)
            {
                switch (_queue.TryPop(chain))
                {
                    case PopResult.Empty:
                        return true;
                    case PopResult.Broken:
                        _counters.BrokenQueue();
                        Log.Error("virtio-fs queue {Queue}: the available ring is inconsistent; queue stopped until reset", _queueIndex);
                        return false;
                    case PopResult.BadChain:
                        _counters.BadChain();
                        Log.Warning("virtio-fs queue {Queue}: malformed descriptor chain {Head} returned unused", _queueIndex, chain.Head);
                        _queue.PushUsed(chain.Head, 0);
                        served = true;
                        continue;
                }

                _queue.PushUsed(chain.Head, (uint)Serve(chain, request, reply));
                served = true;
            }

            return true;
        }
        finally
        {
            if (served && _queue.GuestWantsInterrupt()) _call.Signal();
        }
    }

    private int Serve(DescriptorChain chain, byte[] request, byte[] reply)
    {
        int length = chain.GatherReadable(_memory, request);
        if (length < 0)
        {
            _counters.BadChain();
            Log.Warning("virtio-fs queue {Queue}: request of {Bytes} bytes does not fit the {Size}-byte buffer", _queueIndex, chain.ReadableBytes, request.Length);
            return 0;
        }

        _counters.Request();
        int replyLength = _dispatcher.Dispatch(request.AsSpan(0, length), reply);
        return replyLength <= 0 ? 0 : chain.ScatterWritable(_memory, reply.AsSpan(0, replyLength));
    }
}
