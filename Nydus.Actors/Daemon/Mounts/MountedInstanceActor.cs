using Akka.Actor;
using Akka.Event;
using Nydus.Actors.Storage.Cache;
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
    private readonly BlobCacheRegistry _caches;

    public MountedInstanceActor(string mountpoint, VirtualFileSystem vfs, MountMetricsRegistry metrics, BlobCacheRegistry caches)
    {
        _caches = caches;
        _mountpoint = mountpoint;
        _vfs = vfs;
        _metrics = metrics;

        Receive<OpenInstance>(o => o.Opened is not null, o =>
        {
            // The host's instance, opened before the kernel mount: nothing to wait for, unless its operation expired.
            if (o.Ticket.TryClaim()) Attach(new OpenEnded(o.Command, Replace: false, o.Index, o.Ticket, o.Opened, null));
            else o.Opened!.Instance.Dispose();
        });
        Receive<OpenInstance>(o => BeginOpen(o.Command, replace: false, o.Index, o.Ticket));
        Receive<ReplaceInstance>(r => BeginOpen(r.Command, replace: true, 0, r.Ticket));
        Receive<OpenEnded>(Attach);
        Receive<CloseInstance>(c =>
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
            Sender.Tell(new InstanceDetached(c.OperationId, _mountpoint));
            Context.Stop(Self);
        });
    }

    public static Props Props(string mountpoint, VirtualFileSystem vfs, MountMetricsRegistry metrics, BlobCacheRegistry caches) =>
        Akka.Actor.Props.Create(() => new MountedInstanceActor(mountpoint, vfs, metrics, caches)).WithDispatcher("nydus.blocking-io");

    protected override void PostRestart(Exception reason)
    {
        base.PostRestart(reason);
        Context.Parent.Tell(new InstanceRestarted(_mountpoint, reason.Message));
    }

    /// <summary>
    /// Opens the image on a thread of its own, never on this actor's: an open that never returns (a bootstrap whose
    /// read hangs) then holds only that thread, while this actor still answers (an umount of the instance that serves)
    /// and the service moves on once the operation's limit passes. The result comes back as <see cref="OpenEnded"/>
    /// only if the ticket is still the operation's; a late one is disposed right there, so it changes nothing even
    /// when this actor is gone.
    /// </summary>
    private void BeginOpen(Config.FsBackendMountCmd command, bool replace, int index, OpenTicket ticket)
    {
        var self = Self;
        var log = _log;
        var mountpoint = _mountpoint;
        var events = _metrics.Events;
        var caches = _caches;
        var servedMountpoint = _vfs.KernelMountpoint;
        _ = Task.Factory.StartNew(() =>
        {
            OpenedInstance? opened = null;
            Exception? failure = null;
            try
            {
                opened = MountCommands.Open(command, caches, events: events, servedMountpoint: servedMountpoint);
            }
            catch (Exception e)
            {
                failure = e;
            }
            if (ticket.TryClaim())
            {
                // A restarted actor keeps its address: the result still reaches it.
                self.Tell(new OpenEnded(command, replace, index, ticket, opened, failure));
                return;
            }
            opened?.Instance.Dispose();
            log.Warning("The late {0} of {1} at {2} ended after its operation gave up on it ({3}); nothing changed",
                replace ? "remount" : "mount", command.Source, mountpoint,
                failure is null ? "the image opened and is closed again" : "it failed: " + failure.Message);
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
    }

    private void Attach(OpenEnded ended)
    {
        var (command, replace, index, ticket, maybeOpened, failure) = ended;
        var sender = Context.Parent;
        if (failure is not null)
        {
            if (!MountCommands.IsExpected(failure))
            {
                // A bug: the operation is answered (its ticket is claimed, no time limit would end it), then supervision
                // sees it on this actor.
                sender.Tell(new InstanceFailed(ticket.OperationId, _mountpoint, MountErrorKind.Failed, failure.Message));
                throw new InvalidOperationException($"opening {command.Source} failed unexpectedly", failure);
            }
            var kind = MountCommands.IsCallersFault(failure) ? MountErrorKind.Invalid : MountErrorKind.Failed;
            _log.Warning("Cannot {0} {1} at {2}: {3}", replace ? "remount" : "mount", command.Source, _mountpoint, failure.Message);
            sender.Tell(new InstanceFailed(ticket.OperationId, _mountpoint, kind, failure.Message));
            if (!replace) Context.Stop(Self);
            return;
        }

        var opened = maybeOpened!;
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
            sender.Tell(new InstanceFailed(ticket.OperationId, _mountpoint, kind, e.Message));
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
        sender.Tell(new InstanceAttached(ticket.OperationId, _mountpoint, attachedAt, opened.Backend));
    }

    /// <summary>An open that ended while its ticket was still the operation's (claimed): attach it, or report why not.</summary>
    private sealed record OpenEnded(Config.FsBackendMountCmd Command, bool Replace, int Index, OpenTicket Ticket,
        OpenedInstance? Opened, Exception? Failure);
}
