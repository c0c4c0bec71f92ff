using Microsoft.Win32.SafeHandles;
using Nydus.Actors.Fuse.FileSystem;
using Nydus.Actors.Fuse.Ops;
using Nydus.Actors.Interop;

namespace Nydus.Actors.Fuse.Session;

/// <summary>
/// Serves one /dev/fuse connection with N worker threads. Start and Stop may alternate any number of times
/// on the same descriptor: Stop only wakes the workers through an eventfd, it never closes or unmounts the
/// connection, so requests queue in the kernel until the next Start (here or, after a hand-over, in
/// another process). Workers share the descriptor through dup() rather than FUSE_DEV_IOC_CLONE: a closed
/// clone fails its in-flight requests, which would break fail-over.
/// </summary>
public sealed class FuseSession : IDisposable
{
    private readonly SafeFileHandle _device;
    private readonly FuseSessionOptions _options;
    private readonly object _gate = new();
    private FuseWorker[] _workers = [];
    private SafeFileHandle? _stopEvent;
    private int _generation;
    private int _running;
    private bool _armed;

    /// <param name="device">The /dev/fuse descriptor; the caller keeps ownership (the session never closes it).</param>
    /// <param name="fileSystem">What to serve.</param>
    /// <param name="options">Worker count and INIT options.</param>
    public FuseSession(SafeFileHandle device, IFuseFileSystem fileSystem, FuseSessionOptions options)
    {
        if (options.WorkerCount is < 1 or > FuseSessionOptions.MaxWorkers)
        {
            throw new ArgumentOutOfRangeException(nameof(options), options.WorkerCount, $"worker count must be 1..{FuseSessionOptions.MaxWorkers}");
        }

        _device = device;
        _options = options;
        Dispatcher = new FuseDispatcher(fileSystem, options.InitOptions, new FuseBackingFiles(device));
        Notifier = new FuseNotifier(device);
        Inflight = new FuseInflight(options.WorkerCount);

        // Several workers wait on one open file: without O_NONBLOCK the ones that lose the race for a request
        // would block in read() where the stop event cannot reach them.
        int flags = Libc.Fcntl(device, Libc.F_GETFL, 0);
        if (flags < 0 || Libc.Fcntl(device, Libc.F_SETFL, flags | Libc.O_NONBLOCK) < 0)
        {
            throw new IOException($"cannot make FUSE descriptor non-blocking: {Libc.LastErrno}");
        }
    }

    public FuseDispatcher Dispatcher { get; }

    public FuseNotifier Notifier { get; }

    /// <summary>What each worker is serving now (GET /api/v1/metrics/inflight).</summary>
    public FuseInflight Inflight { get; }

    /// <summary>The /dev/fuse descriptor served (owned by the caller), e.g. to hand to a supervisor.</summary>
    public SafeFileHandle Device => _device;

    public int WorkerCount => _options.WorkerCount;

    /// <summary>Workers of the current generation still running.</summary>
    public int RunningWorkers => Volatile.Read(ref _running);

    /// <summary>Incremented by every Start; tags <see cref="FuseWorkerExit"/>.</summary>
    public int Generation => Volatile.Read(ref _generation);

    /// <summary>Starts <see cref="WorkerCount"/> workers serving the device: <see cref="Prepare"/> and <see cref="Arm"/>.</summary>
    /// <param name="onWorkerExit">Called on each worker's thread as it ends (keep it short: e.g. an actor Tell).</param>
    /// <returns>The generation of the started workers.</returns>
    public int Start(Action<FuseWorkerExit>? onWorkerExit = null)
    {
        lock (_gate)
        {
            int generation = Prepare(onWorkerExit);
            Arm();
            return generation;
        }
    }

    /// <summary>True once the current workers read from the device (<see cref="Arm"/>).</summary>
    public bool Armed
    {
        get
        {
            lock (_gate) return _armed;
        }
    }

    /// <summary>
    /// Starts <see cref="WorkerCount"/> workers parked: their threads run and wait for the stop event only, and
    /// nothing is read from the device until <see cref="Arm"/>. A successor prepares its workers at the takeover, while
    /// its predecessor still serves, so that its start is only <see cref="Arm"/>. <see cref="Stop"/> ends them as usual.
    /// </summary>
    /// <param name="onWorkerExit">Called on each worker's thread as it ends (keep it short: e.g. an actor Tell).</param>
    /// <returns>The generation of the prepared workers.</returns>
    public int Prepare(Action<FuseWorkerExit>? onWorkerExit = null)
    {
        lock (_gate)
        {
            if (Volatile.Read(ref _running) > 0)
            {
                throw new InvalidOperationException("FUSE session workers are already running");
            }

            _stopEvent?.Dispose();
            _stopEvent = Libc.Own(Libc.EventFd(0, Libc.EFD_CLOEXEC | Libc.EFD_NONBLOCK))
                ?? throw new IOException($"eventfd failed: {Libc.LastErrno}");
            int generation = ++_generation;
            var workers = new FuseWorker[_options.WorkerCount];
            try
            {
                for (int i = 0; i < workers.Length; i++)
                {
                    SafeFileHandle copy = Libc.Duplicate(_device);
                    try
                    {
                        workers[i] = new FuseWorker(generation, i, copy, _stopEvent, Dispatcher, Inflight,
                            _options.ThreadNamePrefix + i, exit => OnWorkerExit(exit, onWorkerExit));
                    }
                    catch
                    {
                        copy.Dispose();
                        throw;
                    }
                }
            }
            catch
            {
                // Out of descriptors part-way: give back what the workers made so far hold, start nobody.
                foreach (FuseWorker? worker in workers)
                {
                    worker?.Abandon();
                }

                throw;
            }

            Volatile.Write(ref _running, workers.Length);
            _workers = workers;
            _armed = false;
            foreach (FuseWorker worker in workers)
            {
                worker.Start();
            }

            return generation;
        }
    }

    /// <summary>The prepared workers read from the device from now on: one epoll_ctl each.</summary>
    /// <exception cref="InvalidOperationException">No workers are prepared, or they serve already.</exception>
    /// <exception cref="IOException">epoll_ctl failed; the workers armed before it serve, Stop ends them all.</exception>
    public void Arm()
    {
        lock (_gate)
        {
            if (_armed || Volatile.Read(ref _running) == 0)
            {
                throw new InvalidOperationException(_armed ? "FUSE session workers already serve" : "no FUSE session workers are prepared");
            }

            foreach (FuseWorker worker in _workers)
            {
                worker.Arm();
            }

            _armed = true;
        }
    }

    /// <summary>Wakes every worker and lets it exit; returns at once. The connection stays mounted.</summary>
    public void Stop()
    {
        lock (_gate)
        {
            if (_stopEvent is { IsClosed: false } stopEvent)
            {
                Libc.SignalEvent(stopEvent);
            }
        }
    }

    /// <summary>Waits for the current workers to exit.</summary>
    /// <returns>False when some worker is still running after <paramref name="timeout"/>.</returns>
    public bool Wait(TimeSpan timeout)
    {
        FuseWorker[] workers;
        lock (_gate)
        {
            workers = _workers;
        }

        DateTime deadline = DateTime.UtcNow + timeout;
        foreach (FuseWorker worker in workers)
        {
            TimeSpan left = deadline - DateTime.UtcNow;
            if (!worker.Join(left > TimeSpan.Zero ? left : TimeSpan.Zero))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>Stops and joins the workers (bounded) and releases the stop event; the descriptor stays open.</summary>
    public void Dispose()
    {
        Stop();
        Wait(TimeSpan.FromSeconds(10));
        lock (_gate)
        {
            _stopEvent?.Dispose();
        }
    }

    private void OnWorkerExit(FuseWorkerExit exit, Action<FuseWorkerExit>? callback)
    {
        Interlocked.Decrement(ref _running);
        callback?.Invoke(exit);
    }
}
