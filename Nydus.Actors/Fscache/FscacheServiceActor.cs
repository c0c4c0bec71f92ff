using Akka.Actor;
using Akka.Event;
using Nydus.Actors.Daemon;

namespace Nydus.Actors.Fscache;

/// <summary>
/// The singleton's service child in fscache mode (the daemon's <c>service</c>, where a FUSE daemon has its
/// FuseServiceActor): performs the state machine's actions on the <see cref="FscacheService"/>. StartService starts
/// the worker threads, TerminateService stops them (the device stays open), Umount has nothing to undo. Restore
/// (a takeover) is refused: handing the device over is not built yet. A device that fails ends the daemon, as a
/// FUSE session that ends does. Owns the device, the service and the catalog.
/// </summary>
public sealed class FscacheServiceActor : ReceiveActor
{
    private sealed record DeviceFailed(string Reason);

    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly ICachefilesDevice _device;
    private readonly BlobCacheCatalog _catalog;
    private readonly FscacheService _service;

    public FscacheServiceActor(ICachefilesDevice device, int threads, TimeSpan askTimeout)
    {
        _device = device;
        // The blob cache manager is the daemon's blob-cache child, created before this one.
        _catalog = new BlobCacheCatalog(Context.ActorSelection("../blob-cache"), askTimeout);
        _service = new FscacheService(device, _catalog, threads);
        var self = Self;
        _service.Ended = reason => self.Tell(new DeviceFailed(reason));

        Receive<ServiceActionRequest>(OnAction);
        Receive<DeviceFailed>(f =>
        {
            _log.Error("fscache service ended: {0}", f.Reason);
            Context.Parent.Tell(new ServiceEnded(f.Reason));
        });
    }

    public static Props Props(ICachefilesDevice device, int threads, TimeSpan askTimeout) =>
        Akka.Actor.Props.Create(() => new FscacheServiceActor(device, threads, askTimeout));

    private void OnAction(ServiceActionRequest request)
    {
        switch (request.Action)
        {
            case DaemonAction.StartService:
                _service.Start();
                _log.Info("fscache service started");
                Sender.Tell(ServiceActionResult.Done(request.Action));
                break;
            case DaemonAction.TerminateService:
                _service.Stop();
                Sender.Tell(ServiceActionResult.Done(request.Action));
                break;
            case DaemonAction.Restore:
                Sender.Tell(new ServiceActionResult(request.Action, "takeover of an fscache singleton is not supported yet"));
                break;
            default:
                Sender.Tell(ServiceActionResult.Done(request.Action));
                break;
        }
    }

    protected override void PostStop()
    {
        _service.Dispose();
        _catalog.Dispose();
        _device.Dispose();
    }
}
