using System.Collections.Immutable;
using Akka.Actor;
using Akka.Event;
using Microsoft.Win32.SafeHandles;
using Nydus.Actors.Daemon;
using Nydus.Actors.Daemon.Persistence;
using Nydus.Actors.Storage.Cache.Blobs;
using Nydus.Actors.Upgrade;

namespace Nydus.Actors.Fscache;

/// <summary>
/// The singleton's service child in fscache mode (the daemon's <c>service</c>, where a FUSE daemon has its
/// FuseServiceActor): performs the state machine's actions on the <see cref="FscacheService"/>. StartService starts
/// the worker threads, TerminateService stops them (the device stays open), Umount has nothing to undo. A device
/// that fails ends the daemon, as a FUSE session that ends does. Owns the device, the service and the catalog.
/// <para>
/// Live upgrade and failover (issue 18 item 4), with the FUSE daemon's sequence: <see cref="SendFuseFd"/> hands a
/// copy of the cachefiles descriptor and the handoff state (the blob cache manager's entries, added by the daemon
/// actor) to the supervisor. A successor starts without a device (<see cref="PropsForTakeover"/>); Restore receives
/// the descriptor and adopts it, and the daemon actor restores the blob entries before READY. The successor writes
/// <c>restore</c> at its first StartService, not at the takeover: the supervisor sends start only after the
/// predecessor's exit joined its workers (upgrade) or after it died (failover), and a <c>restore</c> written while
/// the predecessor still reads would offer the requests it is serving to both daemons. On <c>restore</c> the kernel
/// offers again every request read and not answered, and re-opens the objects whose anonymous fds died with the
/// predecessor, so nothing of the open objects needs to travel.
/// </para>
/// </summary>
public sealed class FscacheServiceActor : ReceiveActor
{
    private sealed record DeviceFailed(string Reason);

    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly BlobCacheCatalog _catalog;
    private readonly int _threads;
    private readonly FscacheHandoffSettings? _handoff;
    private readonly FscacheMetrics? _metrics;
    private ICachefilesDevice? _device;
    private FscacheService? _service;
    // Set by a takeover: the first StartService writes `restore` before the workers read.
    private bool _restorePending;

    /// <param name="device">The bound device; null for a successor that waits for a takeover.</param>
    /// <param name="metrics">The counters the API reads (made by the host).</param>
    /// <param name="caches">The daemon's blob caches, where entries with a filecache/blobcache open theirs.</param>
    public FscacheServiceActor(ICachefilesDevice? device, int threads, TimeSpan askTimeout, FscacheHandoffSettings? handoff,
        FscacheMetrics? metrics, Storage.Cache.BlobCacheRegistry caches)
    {
        _threads = threads;
        _metrics = metrics;
        _handoff = handoff;
        // The blob cache manager is the daemon's blob-cache child, created before this one.
        _catalog = new BlobCacheCatalog(Context.ActorSelection("../blob-cache"), askTimeout, caches);
        if (device is not null) Install(device);

        Receive<ServiceActionRequest>(OnAction);
        Receive<SendFuseFd>(m => Sender.Tell(new FuseFdSent(SendFd(m))));
        Receive<AbandonTakeover>(_ => Abandon());
        Receive<CullBlob>(c =>
        {
            if (_device is null || _handoff is null)
                Sender.Tell(BlobCacheResult.Fail(BlobCacheErrorKind.NotReady, "no cachefiles device yet: this daemon waits for a takeover"));
            else FscacheCull.CullAsync(_device, _handoff.CacheDir, c.BlobId).PipeTo(Sender);
        });
        Receive<DeviceFailed>(f =>
        {
            _log.Error("fscache service ended: {0}", f.Reason);
            Context.Parent.Tell(new ServiceEnded(f.Reason));
        });
    }

    /// <summary>A singleton serving a device it bound itself.</summary>
    public static Props Props(ICachefilesDevice device, int threads, TimeSpan askTimeout, FscacheHandoffSettings? handoff,
        FscacheMetrics? metrics, Storage.Cache.BlobCacheRegistry caches) =>
        Akka.Actor.Props.Create(() => new FscacheServiceActor(device, threads, askTimeout, handoff, metrics, caches)).WithDispatcher("nydus.blocking-io");

    /// <summary>A successor (<c>--upgrade</c>): no device until Restore receives the predecessor's.</summary>
    public static Props PropsForTakeover(int threads, TimeSpan askTimeout, FscacheHandoffSettings handoff, FscacheMetrics? metrics,
        Storage.Cache.BlobCacheRegistry caches) =>
        Akka.Actor.Props.Create(() => new FscacheServiceActor(null, threads, askTimeout, handoff, metrics, caches)).WithDispatcher("nydus.blocking-io");

    private void Install(ICachefilesDevice device)
    {
        _device = device;
        _service = new FscacheService(device, _catalog, _threads, _metrics);
        var self = Self;
        _service.Ended = reason => self.Tell(new DeviceFailed(reason));
    }

    private void OnAction(ServiceActionRequest request)
    {
        if (_service is null && request.Action is DaemonAction.StartService or DaemonAction.TerminateService)
        {
            Sender.Tell(new ServiceActionResult(request.Action, "no cachefiles device yet: this daemon waits for a takeover"));
            return;
        }

        switch (request.Action)
        {
            case DaemonAction.StartService:
                if (_restorePending)
                {
                    try
                    {
                        _device!.Write(CachefilesCommands.Restore);
                    }
                    catch (IOException e)
                    {
                        Sender.Tell(new ServiceActionResult(request.Action, $"writing restore to the taken-over cachefiles device failed: {e.Message}"));
                        return;
                    }
                    _restorePending = false;
                    _log.Info("fscache: wrote restore: the kernel offers again what the predecessor read and did not answer");
                }
                _service!.Start();
                _log.Info("fscache service started");
                Sender.Tell(ServiceActionResult.Done(request.Action));
                break;
            case DaemonAction.TerminateService:
                _service!.Stop();
                Sender.Tell(ServiceActionResult.Done(request.Action));
                break;
            case DaemonAction.Restore:
                var (error, received) = Restore();
                Sender.Tell(new ServiceActionResult(request.Action, error) { Received = received });
                break;
            default:
                Sender.Tell(ServiceActionResult.Done(request.Action));
                break;
        }
    }

    /// <summary>The takeover: the predecessor's descriptor and state from the supervisor, checked to be this cache's.
    /// All or nothing: on failure the received descriptor is closed.</summary>
    private (string? Error, HandoffState? Received) Restore()
    {
        if (_device is not null) return ("this daemon has its cachefiles device already", null);
        if (_handoff is null) return ("this daemon was not started for a takeover (--upgrade)", null);
        if (_handoff.SupervisorPath is null) return ("this daemon was started without --supervisor: there is no supervisor to take the cachefiles fd from", null);
        SafeFileHandle? descriptor = null;
        try
        {
            (byte[] bytes, descriptor) = new SupervisorClient(_handoff.SupervisorPath, _handoff.TransferTimeout).Restore();
            var state = HandoffState.Decode(bytes);
            if (state.Fscache is not { } saved)
                throw new UpgradeException(UpgradeErrorKind.CorruptState, "the supervisor's state is a FUSE daemon's, not an fscache singleton's");
            if (saved.CacheDir != _handoff.CacheDir || (saved.Tag ?? "") != (_handoff.Tag ?? ""))
                throw new UpgradeException(UpgradeErrorKind.CorruptState,
                    $"the supervisor's state is for cache {saved.CacheDir} (tag '{saved.Tag}'), this daemon serves {_handoff.CacheDir} (tag '{_handoff.Tag}')");
            Install(_handoff.Adopt(descriptor));
            _restorePending = true;
            _log.Info("Took over the cachefiles device of {CacheDir} with {Entries} blob entries", saved.CacheDir, state.BlobEntries?.Count ?? 0);
            return (null, state);
        }
        catch (Exception e) when (e is UpgradeException or IOException)
        {
            descriptor?.Dispose();
            _log.Warning("Takeover of the cachefiles device failed: {Error}", e.Message);
            return ($"takeover of the cachefiles device failed: {e.Message}", null);
        }
    }

    /// <summary>Undoes a Restore whose takeover failed afterwards (no worker started; the predecessor keeps serving).</summary>
    private void Abandon()
    {
        if (_handoff is null || _device is null || !_restorePending) return;
        _service!.Dispose();
        _device.Dispose();
        _service = null;
        _device = null;
        _restorePending = false;
        _log.Info("Gave up the taken-over cachefiles device; waiting for another takeover");
    }

    /// <summary>Upstream's save for <c>sendfd</c>: the state and a copy of the device descriptor go to the supervisor.</summary>
    private DaemonError? SendFd(SendFuseFd request)
    {
        if (_handoff?.SupervisorPath is not { } supervisor)
            return new DaemonError(DaemonErrorKind.UpgradeManager, "this daemon was started without --supervisor: nowhere to send the cachefiles fd");
        if (_device is null)
            return new DaemonError(DaemonErrorKind.NotReady, "no cachefiles device yet: this daemon waits for a takeover");
        try
        {
            var state = new HandoffState(0, null, [], [], _handoff.DaemonId,
                Instances: [.. Defaulted(request.Instances).Select(Daemon.Mounts.MountCommands.ToHandoff)],
                BlobEntries: [.. Defaulted(request.BlobEntries)],
                BlockExports: [.. Defaulted(request.BlockExports).Select(e => new HandoffBlockExport(e.Name, e.Source, e.Config, e.Mountpoint, e.Address))],
                Fscache: new HandoffFscache(_handoff.CacheDir, _handoff.Tag));
            new SupervisorClient(supervisor, _handoff.TransferTimeout).Save(state.Encode(), _device.Handle);
            _log.Info("Sent the cachefiles fd and {Entries} blob entries to supervisor {Supervisor}", state.BlobEntries!.Count, supervisor);
            return null;
        }
        catch (Exception e) when (e is UpgradeException or IOException)
        {
            _log.Warning("sendfd of the cachefiles device failed: {Error}", e.Message);
            return new DaemonError(DaemonErrorKind.UpgradeManager, $"sending the cachefiles fd to {supervisor} failed: {e.Message}");
        }
    }

    private static ImmutableArray<T> Defaulted<T>(ImmutableArray<T> items) => items.IsDefault ? [] : items;

    protected override void PostStop()
    {
        _service?.Dispose();
        _catalog.Dispose();
        _device?.Dispose();
    }
}
