using System.Collections.Immutable;
using Akka.Actor;
using Akka.Event;
using Nydus.Actors.Config;
using Nydus.Actors.Daemon.Persistence;
using Nydus.Actors.Vfs;

namespace Nydus.Actors.Daemon.Mounts;

/// <summary>The instance mounted from the command line, already attached to the VFS before the kernel mount.</summary>
/// <param name="Command">The mount command the flags amount to: how its actor opens it again after a fault.</param>
public sealed record CommandLineInstance(MountedBackend Backend, int Index, FsBackendMountCmd Command);

/// <summary>
/// The filesystem service: owns the mount table of this daemon's FUSE mount, with one
/// <see cref="MountedInstanceActor"/> child per mounted instance. Mount, remount and umount requests are done one at
/// a time, in arrival order, so the table, the VFS and the journal always agree: an instance is opened and attached
/// first, then the change is recorded in the journal (Mounted/Unmounted events), then the caller is answered. An image
/// that fails to open changes nothing. A child that faults is restarted and opens its instance again from its mount
/// command, without touching the others or the FUSE session.
/// </summary>
public sealed class FsServiceActor : ReceiveActor
{
    private static readonly TimeSpan JournalTimeout = TimeSpan.FromSeconds(30);

    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly VirtualFileSystem? _vfs;
    private readonly IActorRef _journal;
    private readonly MountMetricsRegistry _metrics;
    private readonly Dictionary<string, Entry> _table = new(StringComparer.Ordinal);
    private readonly Queue<Operation> _queue = new();
    private Operation? _current;
    private RestoreProgress? _restore;
    private int _childNumber;

    /// <param name="vfs">The VFS at the FUSE root; null for a daemon without filesystem service (singleton).</param>
    /// <param name="journal">Where mount table changes are recorded.</param>
    /// <param name="commandLine">The instance mounted from the command line, if any.</param>
    public FsServiceActor(VirtualFileSystem? vfs, IActorRef journal, MountMetricsRegistry metrics, CommandLineInstance? commandLine)
    {
        _vfs = vfs;
        _journal = journal;
        _metrics = metrics;
        if (vfs is not null && commandLine is not null)
        {
            var mountpoint = commandLine.Backend.Mountpoint;
            _table[mountpoint] = new Entry(NewChild(mountpoint), commandLine.Command, commandLine.Backend, commandLine.Index, Persisted: false);
        }

        Receive<IMountRequest>(_ => _vfs is null, _ =>
            Sender.Tell(new MountOperationResult(MountErrorKind.Unsupported, "this daemon has no filesystem service (a singleton mounts nothing)")));
        Receive<MountFilesystem>(m => Enqueue(new Operation(OperationKind.Mount, m.Command.Mountpoint, m.Command, 0, Persist: true, Sender) { Abandoned = m.Abandoned }));
        Receive<RemountFilesystem>(r => Enqueue(new Operation(OperationKind.Remount, r.Command.Mountpoint, r.Command, 0, Persist: true, Sender) { Abandoned = r.Abandoned }));
        Receive<UmountFilesystem>(u => Enqueue(new Operation(OperationKind.Umount, u.Mountpoint, null, 0, Persist: true, Sender) { Abandoned = u.Abandoned }));
        Receive<RestoreMounts>(_ => BeginRestore(Sender));
        Receive<RecordToRestore>(OnRecordToRestore);

        Receive<InstanceAttached>(OnAttached);
        Receive<InstanceDetached>(OnDetached);
        Receive<InstanceFailed>(f => Finish(new MountOperationResult(f.Kind, f.Message)));
        Receive<JournalWritten>(w => w.Operation == _current, w => Finish(MountOperationResult.Done(w.Message)));
        Receive<JournalFailed>(f => f.Operation == _current, f =>
            Finish(new MountOperationResult(MountErrorKind.Failed, $"{f.Operation.Mountpoint} changed, but recording it in the journal failed: {f.Cause.Message}")));

        Receive<InstanceRestarted>(OnInstanceRestarted);
        Receive<Terminated>(OnChildTerminated);
    }

    public static Props Props(VirtualFileSystem? vfs, IActorRef journal, MountMetricsRegistry metrics, CommandLineInstance? commandLine) =>
        Akka.Actor.Props.Create(() => new FsServiceActor(vfs, journal, metrics, commandLine));

    /// <summary>A child that throws is restarted (it then opens its instance again); the others are left alone.</summary>
    protected override SupervisorStrategy SupervisorStrategy() =>
        new OneForOneStrategy(maxNrOfRetries: 10, withinTimeRange: TimeSpan.FromMinutes(1), localOnlyDecider: e =>
            e is ActorInitializationException ? Directive.Stop : Directive.Restart);

    protected override void PreStart() => PublishTable();

    private IActorRef NewChild(string mountpoint)
    {
        var child = Context.ActorOf(MountedInstanceActor.Props(mountpoint, _vfs!, _metrics), $"instance-{++_childNumber}");
        Context.Watch(child);
        return child;
    }

    private void Enqueue(Operation operation)
    {
        _queue.Enqueue(operation);
        StartNext();
    }

    private void StartNext()
    {
        while (_current is null && _queue.TryDequeue(out var op))
        {
            // A request whose client has gone (hung up, or its time limit passed while it queued) is not carried out
            // later: the client was told it failed, and nobody would be told it happened.
            if (op.Abandoned.IsCancellationRequested)
            {
                Reply(op, new MountOperationResult(MountErrorKind.Timeout,
                    $"{op.Kind} of {op.Mountpoint} was not carried out: its client gave up while it waited in the queue"));
                continue;
            }
            _table.TryGetValue(op.Mountpoint, out var entry);
            switch (op.Kind)
            {
                case OperationKind.Mount when entry is not null:
                    Reply(op, new MountOperationResult(MountErrorKind.AlreadyExists, $"mountpoint {op.Mountpoint} is already in use"));
                    continue;
                case OperationKind.Mount when NestingConflict(op.Mountpoint) is { } conflict:
                    Reply(op, new MountOperationResult(MountErrorKind.AlreadyExists, conflict));
                    continue;
                case OperationKind.Mount:
                    _current = op with { Child = NewChild(op.Mountpoint) };
                    _current.Child.Tell(new OpenInstance(op.Command!, op.Index, op.Abandoned));
                    break;
                case OperationKind.Remount or OperationKind.Umount when entry is null:
                    Reply(op, new MountOperationResult(MountErrorKind.NotFound, $"nothing is mounted at {op.Mountpoint}"));
                    continue;
                case OperationKind.Remount when entry!.Backend.BackendType != FsBackendType.Rafs.ToDisplayString()
                                                || op.Command!.FsType != FsBackendType.Rafs:
                    Reply(op, new MountOperationResult(MountErrorKind.Invalid,
                        $"remount replaces a RAFS image with a RAFS image; {op.Mountpoint} is {entry.Backend.BackendType} and the request is {op.Command!.FsType.ToDisplayString()}"));
                    continue;
                case OperationKind.Remount:
                    _current = op with { Child = entry!.Child };
                    entry.Child.Tell(new ReplaceInstance(op.Command!, op.Abandoned));
                    break;
                case OperationKind.Umount:
                    _current = op with { Child = entry!.Child };
                    entry.Child.Tell(CloseInstance.Instance);
                    break;
            }
        }
    }

    /// <summary>
    /// A new mountpoint may not hide another mount: not above one (<c>/</c> over <c>/a</c>, <c>/a</c> over <c>/a/b</c>),
    /// nor below a mount other than the root's instance (the VFS checks that a mount under the root's instance hides
    /// none of its names). Checked before the image is opened, so a refused request costs nothing.
    /// </summary>
    private string? NestingConflict(string mountpoint)
    {
        foreach (var other in _table.Keys)
        {
            if (other == VirtualMountpoint.Root) continue;
            if (mountpoint == VirtualMountpoint.Root || other.StartsWith(mountpoint + "/", StringComparison.Ordinal))
                return $"mountpoint {mountpoint} lies above the mount at {other}, which it would hide";
            if (mountpoint.StartsWith(other + "/", StringComparison.Ordinal))
                return $"mountpoint {mountpoint} lies inside the mount at {other}";
        }
        return null;
    }

    private void OnAttached(InstanceAttached attached)
    {
        if (_current is not { } op || attached.Mountpoint != op.Mountpoint) return;
        bool persisted = op.Persist && (op.Kind == OperationKind.Mount || (_table.TryGetValue(op.Mountpoint, out var old) && old.Persisted));
        _table[op.Mountpoint] = new Entry(op.Child!, op.Command!, attached.Backend, attached.Index, persisted);
        PublishTable();
        var message = $"{op.Command!.Source} is {(op.Kind == OperationKind.Mount ? "mounted" : "remounted")} at {op.Mountpoint}";
        if (persisted) Record(op, new RecordMount(MountCommands.ToRecord(op.Command, attached.Index)), message);
        else Finish(MountOperationResult.Done(message));
    }

    private void OnDetached(InstanceDetached detached)
    {
        if (_current is not { } op || detached.Mountpoint != op.Mountpoint) return;
        bool persisted = _table.Remove(op.Mountpoint, out var entry) && entry.Persisted;
        PublishTable();
        var message = $"{op.Mountpoint} is unmounted";
        if (persisted) Record(op, new RecordUnmount(op.Mountpoint), message);
        else Finish(MountOperationResult.Done(message));
    }

    private void Record(Operation op, object command, string message)
    {
        _journal.Ask<Recorded>(command, JournalTimeout).PipeTo(Self,
            success: _ => new JournalWritten(op, message),
            failure: e => new JournalFailed(op, e));
    }

    private void Finish(MountOperationResult result)
    {
        if (_current is not { } op) return;
        _current = null;
        Reply(op, result);
        StartNext();
    }

    private void Reply(Operation op, MountOperationResult result)
    {
        if (!result.Succeeded)
            _log.Warning("{0} of {1} failed: {2}", op.Kind, op.Mountpoint, result.Message);
        if (op.IsRestore) RestoreStepDone(op, result);
        else if (!op.ReplyTo.IsNobody()) op.ReplyTo.Tell(result);
    }

    // ---- restore after a restart ----

    private void BeginRestore(IActorRef replyTo)
    {
        if (_restore is not null)
        {
            replyTo.Tell(new MountOperationResult(MountErrorKind.Failed, "a restore of the mount table is already running"));
            return;
        }
        _restore = new RestoreProgress(replyTo);
        _journal.Ask<DaemonRecord>(GetDaemonRecord.Instance, JournalTimeout).PipeTo(Self,
            success: record => new RecordToRestore(record, null),
            failure: e => new RecordToRestore(null, e));
    }

    private void OnRecordToRestore(RecordToRestore got)
    {
        if (_restore is not { } restore) return;
        if (got.Record is null)
        {
            _restore = null;
            restore.ReplyTo.Tell(new MountOperationResult(MountErrorKind.Failed,
                $"the persisted mount table could not be read: {got.Failure?.Message}"));
            return;
        }
        foreach (var record in got.Record.Mounts.Values)
        {
            if (_table.ContainsKey(record.Mountpoint))
            {
                _log.Info("Not restoring {0} from the journal: the command line mounts it", record.Mountpoint);
                continue;
            }
            FsBackendMountCmd command;
            try
            {
                command = MountCommands.FromRecord(record);
            }
            catch (ConfigException e)
            {
                restore.Failures.Add($"{record.Mountpoint}: {e.Message}");
                continue;
            }
            restore.Remaining++;
            _queue.Enqueue(new Operation(OperationKind.Mount, record.Mountpoint, command, record.VfsIndex, Persist: false, ActorRefs.Nobody)
            {
                IsRestore = true,
            });
        }
        if (restore.Remaining == 0) CompleteRestore();
        else StartNext();
    }

    private void RestoreStepDone(Operation op, MountOperationResult result)
    {
        if (_restore is not { } restore) return;
        if (result.Succeeded)
        {
            restore.Restored++;
            // The journal already holds this mount; a restored instance counts as recorded.
            if (_table.TryGetValue(op.Mountpoint, out var entry)) _table[op.Mountpoint] = entry with { Persisted = true };
        }
        else restore.Failures.Add($"{op.Mountpoint}: {result.Message}");
        if (--restore.Remaining == 0) CompleteRestore();
    }

    private void CompleteRestore()
    {
        var restore = _restore!;
        _restore = null;
        var message = $"restored {restore.Restored} mount(s) from the journal";
        if (restore.Failures.Count > 0)
            _log.Error("{0}; {1} could not be mounted again: {2}", message, restore.Failures.Count, string.Join("; ", restore.Failures));
        else _log.Info("{0}", message);
        restore.ReplyTo.Tell(new MountOperationResult(restore.Failures.Count == 0 ? null : MountErrorKind.Failed,
            message, [.. restore.Failures]));
    }

    // ---- faults ----

    private void OnInstanceRestarted(InstanceRestarted restarted)
    {
        if (!_table.TryGetValue(restarted.Mountpoint, out var entry)) return;
        _log.Warning("The actor of {0} restarted ({1}); opening its instance again from its mount command", restarted.Mountpoint, restarted.Reason);
        Enqueue(new Operation(OperationKind.Remount, restarted.Mountpoint, entry.Command, 0, Persist: entry.Persisted, ActorRefs.Nobody));
    }

    private void OnChildTerminated(Terminated terminated)
    {
        foreach (var (mountpoint, entry) in _table)
        {
            if (!entry.Child.Equals(terminated.ActorRef)) continue;
            // Supervision gave up on it; the instance still serves in the VFS, so give it a fresh owner.
            _log.Error("The actor of {0} stopped; a new one takes over its instance", mountpoint);
            _table[mountpoint] = entry with { Child = NewChild(mountpoint) };
            break;
        }
        if (_current is { Child: { } child } op && child.Equals(terminated.ActorRef) && op.Kind != OperationKind.Umount)
            Finish(new MountOperationResult(MountErrorKind.Failed, $"the actor of {op.Mountpoint} stopped before answering"));
    }

    private void PublishTable()
    {
        var backends = ImmutableSortedDictionary.CreateRange(StringComparer.Ordinal,
            _table.Select(kv => KeyValuePair.Create(kv.Key, kv.Value.Backend)));
        Context.Parent.Tell(new BackendsChanged(backends));
    }

    private enum OperationKind
    {
        Mount,
        Remount,
        Umount,
    }

    private sealed record Operation(OperationKind Kind, string Mountpoint, FsBackendMountCmd? Command, int Index, bool Persist, IActorRef ReplyTo)
    {
        public IActorRef? Child { get; init; }
        public CancellationToken Abandoned { get; init; }
        public bool IsRestore { get; init; }
    }

    private sealed record Entry(IActorRef Child, FsBackendMountCmd Command, MountedBackend Backend, int Index, bool Persisted);

    private sealed class RestoreProgress(IActorRef replyTo)
    {
        public IActorRef ReplyTo { get; } = replyTo;
        public int Remaining { get; set; }
        public int Restored { get; set; }
        public List<string> Failures { get; } = [];
    }

    private sealed record RecordToRestore(DaemonRecord? Record, Exception? Failure);

    private sealed record JournalWritten(Operation Operation, string Message);

    private sealed record JournalFailed(Operation Operation, Exception Cause);
}
