using Nydus.Actors.Config;
using Nydus.Actors.Daemon;
using Nydus.Actors.Daemon.Mounts;
using Nydus.Actors.Fuse.Ops;
using Nydus.Actors.VirtioFs;
using Nydus.Actors.Vfs;
using Serilog;

namespace Nydus.Host;

/// <summary>
/// <c>nydusd virtiofs --sock PATH</c> as a daemon (upstream's create_virtiofs_daemon): the command line's instance is
/// opened and the vhost-user-fs socket bound before the daemon exists, so a bad image or socket path ends the start
/// before anything serves; the socket accepts the VMM only once the state machine starts the service. The guest's
/// virtiofs mount is the root of the daemon's VFS, as a FUSE daemon's kernel mount is: the command line's instance
/// and the API's mounts (<c>POST /api/v1/mount?mountpoint=/sub</c>) are attached to it alike.
/// </summary>
public sealed class VirtioFsServiceSetup : FsServiceSetup
{
    private VirtioFsServiceSetup(Akka.Actor.Props serviceProps, VirtualFileSystem vfs, MountFilesystem? commandLine, Action undo)
        : base(serviceProps, vfs, commandLine, undo)
    {
    }

    public static VirtioFsServiceSetup Prepare(NydusdOptions options, MountMetricsRegistry metrics,
        Nydus.Actors.Storage.Cache.BlobCacheRegistry caches)
    {
        var socketPath = options.VirtioFsSocket ?? throw new ArgumentException("not a virtio-fs daemon: no --sock", nameof(options));
        var opened = OpenCommandLineInstance(options, metrics.Events, servedMountpoint: null, caches);
        var instance = opened?.Opened.Instance;
        // No kernel mountpoint on this host (the mount is in the guest), and no notifier: virtio-fs carries no FUSE
        // notifications, so the pseudo directories of API mounts are cached by the guest for a second only.
        var vfs = new VirtualFileSystem();
        VhostUserFsServer server;
        try
        {
            // What the command line's instance wants; a root filled only through the API serves images.
            server = new VhostUserFsServer(socketPath, vfs, instance?.InitOptions ?? FuseInitOptions.ReadOnlyImage, options.ThreadNum);
        }
        catch (Exception e)
        {
            vfs.Dispose();
            instance?.Dispose();
            if (e is System.Net.Sockets.SocketException) throw new IOException($"cannot listen on vhost-user socket {socketPath}: {e.Message}", e);
            throw;
        }

        Log.Information("Opened {Kind}; vhost-user-fs socket {Socket} bound ({Queues} request queues)",
            instance?.Type.ToDisplayString() ?? "an empty root", server.SocketPath, options.ThreadNum);
        // The service releases, in order: the server (its queue workers), then the VFS and every instance in it.
        var props = VirtioFsServiceActor.Props(server, vfs);
        return new VirtioFsServiceSetup(props, vfs, AsMount(opened), () =>
        {
            server.Dispose();
            vfs.Dispose();
            instance?.Dispose();
        });
    }
}
