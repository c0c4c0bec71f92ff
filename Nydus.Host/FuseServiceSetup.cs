using Akka.Actor;
using Nydus.Actors.Config;
using Nydus.Actors.Daemon;
using Nydus.Actors.Daemon.Mounts;
using Nydus.Actors.Fuse.Session;
using Nydus.Actors.Fuse.Ops;
using Nydus.Actors.Upgrade;
using Nydus.Actors.Vfs;
using Serilog;

namespace Nydus.Host;

/// <summary>
/// Upstream's start order for a FUSE daemon (create_fuse_daemon): open the filesystem, mount the kernel side, then
/// hand both to the daemon's service so that Mount and Start can follow. Anything wrong with the image, the config
/// or the mountpoint is reported before the kernel mount is made, and a failure after it unmounts again.
/// A daemon that takes over (<c>--upgrade</c>, or a crashed predecessor, §3) opens the same filesystems but makes no
/// kernel mount: its service waits in INIT for the descriptor the supervisor holds.
/// </summary>
public sealed class FuseServiceSetup : FsServiceSetup
{
    private FuseServiceSetup(Props serviceProps, VirtualFileSystem vfs, MountFilesystem? commandLine, string mountPoint, Action undo)
        : base(serviceProps, vfs, commandLine, undo)
    {
        MountPoint = mountPoint;
    }

    /// <summary>Where the kernel mount is.</summary>
    public string MountPoint { get; }

    /// <param name="handoff">Supervisor settings for sendfd and takeover.</param>
    /// <param name="takeover">Non-null when this daemon is to take over an existing kernel mount instead of making one.</param>
    /// <param name="metrics">The daemon's table of instances: gets the session's in-flight requests.</param>
    /// <param name="caches">The daemon's blob caches, where the command line's image opens its cache.</param>
    public static FuseServiceSetup Prepare(NydusdOptions options, FuseHandoffSettings handoff, TakeoverReason? takeover,
        MountMetricsRegistry metrics, Nydus.Actors.Storage.Cache.BlobCacheRegistry caches)
    {
        var mountpoint = Path.GetFullPath(options.Mountpoint!);
        // Checked before anything opens: a successor with no mount to take over would wait in INIT for nothing. Never
        // stat() a mountpoint to take over: after a crash nobody answers its FUSE requests, and a root whose attributes
        // the kernel does not cache (an empty root filled through the API) would hang this start for good.
        if (takeover is not null && !FuseMount.IsMounted(mountpoint))
            throw new IOException($"nothing is mounted at {mountpoint} to take over (--upgrade needs the running daemon's mount)");
        if (takeover is null && !Directory.Exists(mountpoint))
            throw new IOException($"mountpoint {mountpoint} is not an existing directory");

        var opened = OpenCommandLineInstance(options, metrics.Events, mountpoint, caches);
        var instance = opened?.Opened.Instance;
        // Every daemon serves a VFS at its FUSE root, as upstream's does: the command line's instance at its
        // virtual mountpoint, the API's instances beside it. The workers start only after the host has mounted the
        // command line's instance through the daemon (before Start), so nothing is served from an empty VFS.
        var vfs = new VirtualFileSystem { KernelMountpoint = mountpoint };
        var commandLine = AsMount(opened);
        FuseDevice? device = null;
        FuseSession? session = null;

        // A session, mounted or taken over, is wired the same way: the device it serves, the VFS's notifications, the
        // API's view of its requests. The device is read from mountinfo, never by stat() of the mountpoint (which
        // would wait for this daemon's own workers).
        FuseSession Serve(FuseSession serving)
        {
            serving.Dispatcher.ServedDeviceMinor = FuseMount.FindConnectionId(mountpoint) ?? 0;
            vfs.Notifier = serving.Notifier;
            metrics.Inflight = serving.Inflight;
            metrics.Dispatcher = serving.Dispatcher;
            return serving;
        }

        var sessionOptions = new FuseSessionOptions
        {
            WorkerCount = options.ThreadNum,
            // What the command line's instance wants; a root filled only through the API serves images.
            InitOptions = instance?.InitOptions ?? FuseInitOptions.ReadOnlyImage,
        };
        if (takeover is not null)
        {
            // The session is built on the descriptor the takeover receives; until then the mount is the
            // predecessor's, so nothing here ever unmounts it.
            var waiting = FuseServiceActor.PropsForTakeover(descriptor =>
            {
                var restored = Serve(new FuseSession(descriptor, vfs, sessionOptions));
                vfs.AssumeZeroMessageOpen();
                return restored;
            }, placeholder => new FuseSession(placeholder, vfs, sessionOptions), mountpoint, handoff, vfs);
            Log.Information("Opened {Kind} for {MountPoint}; waiting in INIT for a takeover ({Reason})",
                instance?.Type.ToDisplayString() ?? "an empty root", mountpoint, takeover);
            return new FuseServiceSetup(waiting, vfs, commandLine, mountpoint, () =>
            {
                vfs.Dispose();
                instance?.Dispose();
            });
        }

        try
        {
            device = FuseMount.Mount(mountpoint, new FuseMountOptions
            {
                Source = instance?.Type == FsBackendType.PassthroughFs ? "passthroughfs" : "rafs",
                ReadOnly = !options.Writable,
                AllowOther = true,
            });
            Log.Information("Mounted {Kind} at {MountPoint}", instance?.Type.ToDisplayString() ?? "an empty root", mountpoint);
            session = Serve(new FuseSession(device.Handle, vfs, sessionOptions));
        }
        catch
        {
            if (session is not null && metrics.Inflight == session.Inflight) metrics.Inflight = null;
            if (session is not null && metrics.Dispatcher == session.Dispatcher) metrics.Dispatcher = null;
            session?.Dispose();
            if (device is not null)
            {
                FuseMount.Unmount(mountpoint);
                device.Dispose();
            }
            vfs.Dispose();
            instance?.Dispose();
            throw;
        }

        // The service releases, in order: the session (workers), the descriptor, then the VFS and every instance in it.
        var props = FuseServiceActor.Props(session, mountpoint, handoff, session, device, vfs);
        return new FuseServiceSetup(props, vfs, commandLine, mountpoint, () =>
        {
            try { FuseMount.Unmount(mountpoint); } catch (Exception e) { Log.Warning("Unmounting {MountPoint} failed: {Error}", mountpoint, e.Message); }
            session.Dispose();
            device.Dispose();
            vfs.Dispose();
            instance?.Dispose();
        });
    }
}
