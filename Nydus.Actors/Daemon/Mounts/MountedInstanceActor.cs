using Akka.Actor;
using Akka.Event;
using Nydus.Actors.Vfs;

namespace Nydus.Actors.Daemon.Mounts;

/// <summary>
/// Owns the lifetime of one mounted filesystem instance at one virtual mountpoint: opens it from its mount command,
/// attaches it to the daemon's <see cref="VirtualFileSystem"/>, swaps it on remount, detaches it on umount, and keeps
/// its metrics registered meanwhile. Requests never pass through here: the FUSE workers reach the instance through
/// the VFS. Runs on the blocking-I/O dispatcher because opening an image reads files and may fetch from a registry.
/// </summary>
/// <remarks>
/// The VFS, not this actor, holds the open instance: a detached instance closes when its last reader goes, so an
/// actor that faults and restarts leaves the instance serving, and the parent sends it the mount command to open
/// afresh (<see cref="InstanceRestarted"/>).
/// </remarks>
public sealed class MountedInstanceActor : ReceiveActor
{
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly string _mountpoint;
    private readonly VirtualFileSystem _vfs;
    private readonly MountMetricsRegistry _metrics;

    public MountedInstanceActor(string mountpoint, VirtualFileSystem vfs, MountMetricsRegistry metrics)
    {
        _mountpoint = mountpoint;
        _vfs = vfs;
        _metrics = metrics;

        Receive<OpenInstance>(o => Attach(o.Command, replace: false, o.Index, o.Opened, o.Abandoned));
        Receive<ReplaceInstance>(r => Attach(r.Command, replace: true, 0, null, r.Abandoned));
        Receive<CloseInstance>(_ =>
        {
            try
            {
                _vfs.Umount(_mountpoint);
            }
            catch (KeyNotFoundException)
            {
                // Already gone from the VFS: the table's view is what the caller asked for.
            }
            _metrics.Unregister(_mountpoint);
            _log.Info("Unmounted the instance at {0}", _mountpoint);
            Sender.Tell(new InstanceDetached(_mountpoint));
            Context.Stop(Self);
        });
    }

    public static Props Props(string mountpoint, VirtualFileSystem vfs, MountMetricsRegistry metrics) =>
        Akka.Actor.Props.Create(() => new MountedInstanceActor(mountpoint, vfs, metrics)).WithDispatcher("nydus.blocking-io");

    protected override void PostRestart(Exception reason)
    {
        base.PostRestart(reason);
        Context.Parent.Tell(new InstanceRestarted(_mountpoint, reason.Message));
    }

    /// <param name="preopened">The instance the host opened already (the command line's), or null to open it here.</param>
    private void Attach(Config.FsBackendMountCmd command, bool replace, int index, OpenedInstance? preopened, CancellationToken abandoned)
    {
        OpenedInstance opened;
        try
        {
            opened = preopened ?? MountCommands.Open(command, events: _metrics.Events);
        }
        catch (Exception e) when (MountCommands.IsExpected(e))
        {
            var kind = MountCommands.IsCallersFault(e) ? MountErrorKind.Invalid : MountErrorKind.Failed;
            _log.Warning("Cannot {0} {1} at {2}: {3}", replace ? "remount" : "mount", command.Source, _mountpoint, e.Message);
            Sender.Tell(new InstanceFailed(_mountpoint, kind, e.Message));
            if (!replace) Context.Stop(Self);
            return;
        }

        // The client gave up while the image was opened (a big image, a slow disk): close it again rather than
        // change the table behind the back of a caller that was told the request failed.
        if (abandoned.IsCancellationRequested)
        {
            opened.Instance.Dispose();
            _log.Warning("Not {0} {1} at {2}: its client gave up while it was opened", replace ? "remounting" : "mounting", command.Source, _mountpoint);
            Sender.Tell(new InstanceFailed(_mountpoint, MountErrorKind.Timeout,
                $"{(replace ? "remount" : "mount")} of {_mountpoint} was not carried out: its client gave up while the image was opened"));
            if (!replace) Context.Stop(Self);
            return;
        }

        int attachedAt;
        try
        {
            attachedAt = replace
                ? _vfs.Remount(_mountpoint, opened.Instance.FileSystem, opened.Instance)
                : _vfs.Mount(_mountpoint, opened.Instance.FileSystem, opened.Instance, index);
        }
        catch (Exception e) when (e is InvalidOperationException or KeyNotFoundException or ArgumentException)
        {
            opened.Instance.Dispose();
            var kind = e is KeyNotFoundException ? MountErrorKind.NotFound
                : e is ArgumentException ? MountErrorKind.Invalid : MountErrorKind.AlreadyExists;
            Sender.Tell(new InstanceFailed(_mountpoint, kind, e.Message));
            if (!replace) Context.Stop(Self);
            return;
        }

        if (opened.Instance.Metrics is { } metrics) _metrics.Register(_mountpoint, metrics);
        else _metrics.UnregisterStorage(_mountpoint);
        if (_vfs.StatsOf(_mountpoint) is { } stats)
        {
            stats.Configure(opened.Instance.Accounting);
            _metrics.RegisterFs(_mountpoint, stats);
        }
        _log.Info("{0} {1} ({2}) at {3}, instance index {4}", replace ? "Remounted" : "Mounted", command.Source,
            opened.Backend.BackendType, _mountpoint, attachedAt);
        Sender.Tell(new InstanceAttached(_mountpoint, attachedAt, opened.Backend));
    }
}
