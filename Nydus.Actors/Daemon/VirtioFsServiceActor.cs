using Akka.Actor;
using Akka.Event;
using Nydus.Actors.VirtioFs;

namespace Nydus.Actors.Daemon;

/// <summary>
/// The service of a virtio-fs daemon (<c>nydusd virtiofs --sock PATH</c>): performs the state machine's actions on
/// its vhost-user-fs socket, as <see cref="FuseServiceActor"/> does on a FUSE mount. The socket is bound before the
/// daemon exists (the host's setup, so a bad path fails the start); start accepts VMMs, terminate ends the current
/// VMM's connection and stops accepting (the socket stays), umount closes and removes the socket. As upstream's
/// virtiofs daemon, the daemon is RUNNING once it accepts, whether or not a VMM has connected yet.
/// A vhost-user connection cannot be handed to another process (qemu does not reconnect), so sendfd and takeover
/// are refused: a virtio-fs daemon is restarted together with its VM. Runs on the blocking-I/O dispatcher because a
/// stop joins the connection's threads.
/// </summary>
public sealed class VirtioFsServiceActor : ReceiveActor
{
    /// <summary>Why neither sendfd nor takeover can work for virtio-fs (README: virtio-fs, lifecycle).</summary>
    public const string NoHandoff =
        "a virtio-fs daemon cannot hand over its vhost-user connection (qemu's vhost-user-fs does not reconnect); restart it with its VM";

    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly VhostUserFsServer _server;
    private readonly IDisposable[] _owned;

    /// <param name="server">The bound vhost-user-fs socket, serving the daemon's VFS.</param>
    /// <param name="owned">What this service releases after the server when it stops (the VFS and its instances).</param>
    public VirtioFsServiceActor(VhostUserFsServer server, IDisposable[] owned)
    {
        _server = server;
        _owned = owned;
        Receive<ServiceActionRequest>(OnAction);
        Receive<SendFuseFd>(_ => Sender.Tell(new FuseFdSent(new DaemonError(DaemonErrorKind.Unsupported, NoHandoff))));
    }

    public static Props Props(VhostUserFsServer server, params IDisposable[] owned) =>
        Akka.Actor.Props.Create(() => new VirtioFsServiceActor(server, owned)).WithDispatcher("nydus.blocking-io");

    private void OnAction(ServiceActionRequest request)
    {
        string? error = null;
        switch (request.Action)
        {
            case DaemonAction.StartService:
                try
                {
                    _server.Start();
                    _log.Info("virtio-fs served on {0}", _server.SocketPath);
                }
                catch (Exception e) when (e is InvalidOperationException or ObjectDisposedException)
                {
                    error = $"cannot accept on {_server.SocketPath}: {e.Message}";
                }
                break;
            case DaemonAction.TerminateService:
                if (!_server.Stop()) error = $"the vhost-user connection on {_server.SocketPath} did not end within 15 s";
                else _log.Info("virtio-fs: stopped accepting on {0}; the socket stays", _server.SocketPath);
                break;
            case DaemonAction.Umount:
                _server.Dispose();
                _log.Info("virtio-fs: closed and removed {0}", _server.SocketPath);
                break;
            case DaemonAction.Restore:
                error = NoHandoff;
                break;
            default:
                error = $"{request.Action} is not supported by the virtio-fs service";
                break;
        }
        Sender.Tell(new ServiceActionResult(request.Action, error));
    }

    protected override void PostStop()
    {
        // The server first: its queue workers read the VFS until they stop.
        try
        {
            _server.Dispose();
        }
        catch (Exception e)
        {
            _log.Warning(e, "Closing the vhost-user socket {0} failed", _server.SocketPath);
        }
        foreach (var resource in _owned)
        {
            try
            {
                resource.Dispose();
            }
            catch (Exception e)
            {
                _log.Warning(e, "Releasing {0} failed", resource.GetType().Name);
            }
        }
    }
}
