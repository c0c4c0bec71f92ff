using System.Collections.Immutable;
using Akka.Actor;
using Akka.Event;
using Nydus.Actors.Config;
using Nydus.Actors.Daemon.Persistence;
using Nydus.Actors.Storage.Cache;
using Nydus.Actors.Vfs;

namespace Nydus.Actors.Daemon.Mounts;

/// <summary>
/// The filesystem service: owns the mount table of this daemon's FUSE mount, with one
/// <see cref="MountedInstanceActor"/> child per mounted instance. Mount, remount and umount requests are done one at
/// a time, in arrival order, so the table, the VFS and the journal always agree: an instance is opened and attached
/// first, then the change is recorded in the journal (Mounted/Unmounted events), then the caller is answered; an
/// umount is recorded first and then detached. An image that fails to open changes nothing, and neither does a change
/// the journal cannot record (a full disk, a read-only work dir): a mount or remount is undone, an umount never
/// starts. A child that faults is restarted and opens its instance again from its mount command, without touching
/// the others or the FUSE session.
/// The command line's instance comes the same way (a <see cref="MountFilesystem"/> from the host, with the instance
/// it opened before the kernel mount) and is recorded like the others. A successor that takes over restores the
/// table from the handoff state (<see cref="RestoreMounts.FromHandoff"/>); until it runs (<see cref="JournalIsOurs"/>)
/// its predecessor still writes the shared journal, so its own changes are written then.
/// No request blocks the queue behind it: the open of an image has a time limit (HOCON
/// <c>nydus.daemon.mount-open-timeout</c>), and a client that gives up ends its request's wait too. Past either,
/// the request is answered <see cref="MountErrorKind.Timeout"/> and the next one starts; the open goes on on its own
/// thread and, once it ends, is disposed there (see <see cref="OpenTicket"/>), so a late open changes nothing.
/// </summary>
public sealed class FsServiceActor : ReceiveActor, IWithTimers
{
    private static readonly TimeSpan JournalTimeout = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan DefaultOpenTimeout = TimeSpan.FromSeconds(60);
    private const string OpenLimitTimer = "open-limit";

    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly VirtualFileSystem? _vfs;
    private readonly IActorRef _journal;
    private readonly MountMetricsRegistry _metrics;
    private readonly DaemonReadModel? _readModel;
    private readonly BlobCacheRegistry _caches;
    private readonly Dictionary<string, Entry> _table = new(StringComparer.Ordinal);
    private readonly Queue<Operation> _queue = new();
    private Operation? _current;
    private long _lastOperationId;
    private readonly TimeSpan _openTimeout;
    // Watches the current operation's client (its time limit, a hang-up) while one of its opens is under way.
    private CancellationTokenRegistration? _clientGone;
    private RestoreProgress? _restore;
    private int _childNumber;
    // A successor waiting for a takeover must not write the journal its predecessor writes: changes wait for
    // JournalIsOurs. Unmounts made meanwhile are remembered here.
    private bool _journalDeferred;
    private readonly CatchUpProgress _catchUp = new();
    private readonly HashSet<string> _unmountedWhileDeferred = new(StringComparer.Ordinal);

    /// <param name="vfs">The VFS at the FUSE root; null for a daemon without filesystem service (singleton).</param>
    /// <param name="journal">Where mount table changes are recorded.</param>
    /// <param name="journalDeferred">Write nothing to the journal until <see cref="JournalIsOurs"/>.</param>
    /// <param name="openTimeout">Time limit of one open; null: HOCON nydus.daemon.mount-open-timeout (default 60 s).</param>
    /// <param name="caches">The daemon's blob caches, which instances open their caches in.</param>
    /// <param name="readModel">Where the API reads the mount table (GET /api/v1/daemon); null: nowhere but the parent.</param>
    public FsServiceActor(VirtualFileSystem? vfs, IActorRef journal, MountMetricsRegistry metrics, BlobCacheRegistry caches,
        bool journalDeferred = false, TimeSpan? openTimeout = null, DaemonReadModel? readModel = null)
    {
        _readModel = readModel;
        _caches = caches;
        _openTimeout = openTimeout ?? Context.System.Settings.Config.GetTimeSpan("nydus.daemon.mount-open-timeout", DefaultOpenTimeout);
        _vfs = vfs;
        _journal = journal;
        _metrics = metrics;
        _journalDeferred = journalDeferred;

        Receive<MountFilesystem>(m => _vfs is null, m =>
        {
            m.Opened?.Instance.Dispose();
            Sender.Tell(new MountOperationResult(MountErrorKind.Unsupported, "this daemon has no filesystem service (a singleton mounts nothing)"));
        });
        Receive<IMountRequest>(_ => _vfs is null, _ =>
            Sender.Tell(new MountOperationResult(MountErrorKind.Unsupported, "this daemon has no filesystem service (a singleton mounts nothing)")));
        Receive<MountFilesystem>(m => Enqueue(new Operation(OperationKind.Mount, m.Command.Mountpoint, m.Command, 0, Persist: true, Sender)
        {
            Opened = m.Opened,
            Abandoned = m.Abandoned,
            AnswerWhenAttached = m.AnswerWhenAttached,
        }));
        Receive<RemountFilesystem>(r => Enqueue(new Operation(OperationKind.Remount, r.Command.Mountpoint, r.Command, 0, Persist: true, Sender) { Abandoned = r.Abandoned }));
        Receive<UmountFilesystem>(u => Enqueue(new Operation(OperationKind.Umount, u.Mountpoint, null, 0, Persist: true, Sender) { Abandoned = u.Abandoned }));
        Receive<RestoreMounts>(r => BeginRestore(r, Sender));
        Receive<RecordToRestore>(OnRecordToRestore);
        Receive<JournalIsOurs>(_ => OnJournalIsOurs());
        Receive<RecordToCatchUp>(OnRecordToCatchUp);
        Receive<CatchUpWritten>(OnCatchUpWritten);

        // A child's answer counts only for the operation it was asked for: one that gave up has moved on.
        Receive<InstanceAttached>(a => a.OperationId == _current?.Id, OnAttached);
        Receive<InstanceDetached>(d => d.OperationId == _current?.Id, OnDetached);
        // The swap back of a remount the journal did not record failed: the new image keeps serving.
        Receive<InstanceFailed>(f => f.OperationId == _current?.Id && _current.Undo is not null, f => Finish(SwapBackFailed(f.Message)));
        Receive<InstanceFailed>(f => f.OperationId == _current?.Id, f => Finish(new MountOperationResult(f.Kind, f.Message)));
        Receive<OpenLimitPassed>(OnOpenLimitPassed);
        Receive<JournalWritten>(w => w.Operation == _current, OnJournalWritten);
        Receive<JournalFailed>(f => f.Operation == _current, OnJournalFailed);

        Receive<InstanceRestarted>(OnInstanceRestarted);
        Receive<Terminated>(OnChildTerminated);
    }

    public static Props Props(VirtualFileSystem? vfs, IActorRef journal, MountMetricsRegistry metrics, BlobCacheRegistry caches,
        bool journalDeferred = false, TimeSpan? openTimeout = null, DaemonReadModel? readModel = null) =>
        Akka.Actor.Props.Create(() => new FsServiceActor(vfs, journal, metrics, caches, journalDeferred, openTimeout, readModel));

    public ITimerScheduler Timers { get; set; } = null!;

    /// <summary>A child that throws is restarted (it then opens its instance again); the others are left alone.</summary>
    protected override SupervisorStrategy SupervisorStrategy() =>
        new OneForOneStrategy(maxNrOfRetries: 10, withinTimeRange: TimeSpan.FromMinutes(1), localOnlyDecider: e =>
            e is ActorInitializationException ? Directive.Stop : Directive.Restart);

    protected override void PreStart() => PublishTable();

    private IActorRef NewChild(string mountpoint)
    {
        var child = Context.ActorOf(MountedInstanceActor.Props(mountpoint, _vfs!, _metrics, _caches), $"instance-{++_childNumber}");
        Context.Watch(child);
        return child;
    }

    private void Enqueue(Operation operation)
    {
        _queue.Enqueue(operation with { Id = ++_lastOperationId });
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
                op.Opened?.Instance.Dispose();
                Reply(op, new MountOperationResult(MountErrorKind.Timeout,
                    $"{op.Kind} of {op.Mountpoint} was not carried out: its client gave up while it waited in the queue"));
                continue;
            }
            _table.TryGetValue(op.Mountpoint, out var entry);
            switch (op.Kind)
            {
                case OperationKind.Mount when entry is not null && op.IsRestore:
                    // Mounted meanwhile (the command line's instance, an API request): never swapped by a restore. A
                    // taken-over instance must keep its predecessor's index, or the kernel's node ids turn ESTALE.
                    Reply(op, op.FromHandoff && entry.Index != op.Index
                        ? new MountOperationResult(MountErrorKind.Failed,
                            $"{op.Mountpoint} is served at instance index {entry.Index} here, the predecessor served it at {op.Index}")
                        : MountOperationResult.Done($"{op.Mountpoint} is mounted already"));
                    continue;
                case OperationKind.Mount when entry is not null && SameMount(entry.Command, op.Command!):
                    // Idempotent: nydus-snapshotter mounts every instance again after restarting or upgrading a
                    // shared daemon (RecoverRafsInstances) and fails the upgrade on the first error.
                    op.Opened?.Instance.Dispose();
                    Reply(op, MountOperationResult.Done($"{op.Command!.Source} is already mounted at {op.Mountpoint}"));
                    continue;
                case OperationKind.Mount when entry is not null && op.Opened is null && IsNewConfigForSameImage(entry, op.Command!):
                    // The same image with another config (refreshed credentials, other cache settings): take it.
                    _log.Info("{0} is mounted at {1} with another config: remounting it with the new one", op.Command!.Source, op.Mountpoint);
                    _current = op with { Kind = OperationKind.Remount, Child = entry.Child };
                    entry.Child.Tell(new ReplaceInstance(op.Command!, StartOpenLimit()));
                    break;
                case OperationKind.Mount when entry is not null:
                    op.Opened?.Instance.Dispose();
                    Reply(op, new MountOperationResult(MountErrorKind.AlreadyExists,
                        $"mountpoint {op.Mountpoint} is already in use by {entry.Command.FsType.ToDisplayString()} {entry.Command.Source}"));
                    continue;
                case OperationKind.Mount when NestingConflict(op.Mountpoint) is { } conflict:
                    Reply(op, new MountOperationResult(MountErrorKind.AlreadyExists, conflict));
                    continue;
                case OperationKind.Mount when op.IsRestore && !op.FromHandoff && op.Index != 0 && _table.Values.Any(e => e.Index == op.Index):
                    // A restart's restore runs while the daemon serves already: an API mount made meanwhile may hold the
                    // recorded index. A cold start's kernel holds no node ids of it, so any index serves; the journal
                    // then records the one it got, so that it stays equal to what is served.
                    _log.Info("{0}: its recorded instance index {1} is taken by a mount made meanwhile; restoring it at a free one", op.Mountpoint, op.Index);
                    _queue.Enqueue(op with { Index = 0, Persist = true, Id = ++_lastOperationId });
                    continue;
                case OperationKind.Mount:
                    _current = op with { Child = NewChild(op.Mountpoint) };
                    _current.Child.Tell(new OpenInstance(op.Command!, op.Index, StartOpenLimit()) { Opened = op.Opened });
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
                    entry.Child.Tell(new ReplaceInstance(op.Command!, StartOpenLimit()));
                    break;
                case OperationKind.Umount:
                    _current = op with { Child = entry!.Child };
                    // Recorded before it is done: a journal that cannot record it leaves the instance serving. A
                    // successor whose journal is still its predecessor's records it when it runs (JournalIsOurs).
                    if (op.Persist && entry.Persisted && !_journalDeferred) Record(_current, new RecordUnmount(op.Mountpoint), $"{op.Mountpoint} is unmounted");
                    else
                    {
                        if (op.Persist && entry.Persisted) _unmountedWhileDeferred.Add(op.Mountpoint);
                        entry.Child.Tell(new CloseInstance(op.Id));
                    }
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
        if (op.Undo is { } undone)
        {
            // A remount the journal could not record, swapped back to the image it replaced.
            _table[op.Mountpoint] = op.Previous! with { Backend = attached.Backend, Index = attached.Index };
            PublishTable();
            Finish(undone);
            return;
        }
        if (op.Kind == OperationKind.Remount && _table.TryGetValue(op.Mountpoint, out var replaced)) _current = op = op with { Previous = replaced };
        bool persisted = op.Persist && (op.Kind == OperationKind.Mount || (_table.TryGetValue(op.Mountpoint, out var old) && old.Persisted));
        _table[op.Mountpoint] = new Entry(op.Child!, op.Command!, attached.Backend, attached.Index, persisted);
        _unmountedWhileDeferred.Remove(op.Mountpoint);
        PublishTable();
        var message = $"{op.Command!.Source} is {(op.Kind == OperationKind.Mount ? "mounted" : "remounted")} at {op.Mountpoint}";
        // Deferred: written at JournalIsOurs, with everything else changed meanwhile.
        if (persisted && !_journalDeferred)
        {
            if (op.AnswerWhenAttached)
            {
                // Serving now; the queue still waits for the write, so the journal records changes in their order.
                Reply(op, MountOperationResult.Done(message));
                _current = op = op with { ReplyTo = ActorRefs.Nobody };
            }
            Record(op, new RecordMount(MountCommands.ToRecord(op.Command, attached.Index)), message);
        }
        else Finish(MountOperationResult.Done(message));
    }

    private void OnDetached(InstanceDetached detached)
    {
        if (_current is not { } op || detached.Mountpoint != op.Mountpoint) return;
        _table.Remove(op.Mountpoint);
        PublishTable();
        // An umount (recorded already), or a mount the journal could not record, taken back.
        Finish(op.Undo ?? MountOperationResult.Done($"{op.Mountpoint} is unmounted"));
    }

    private void OnJournalWritten(JournalWritten written)
    {
        if (written.Operation.Kind == OperationKind.Umount) written.Operation.Child!.Tell(new CloseInstance(written.Operation.Id));
        else Finish(MountOperationResult.Done(written.Message));
    }

    /// <summary>
    /// The journal did not record the change: undo it, so that what serves is what a restart would mount. A full disk
    /// is <see cref="MountErrorKind.InsufficientStorage"/> (507), anything else <see cref="MountErrorKind.Failed"/>.
    /// </summary>
    private void OnJournalFailed(JournalFailed failed)
    {
        var op = failed.Operation;
        var kind = JournalFailures.IsDiskFull(failed.Cause) ? MountErrorKind.InsufficientStorage : MountErrorKind.Failed;
        var cause = failed.Cause is AskTimeoutException ? "the journal did not answer in time" : JournalFailures.Describe(failed.Cause);
        var undone = new MountOperationResult(kind, $"{op.Kind.ToString().ToLowerInvariant()} of {op.Mountpoint} was not recorded in the daemon journal ({cause}), so nothing changed");
        if (op.AnswerWhenAttached)
        {
            // Answered as served already (the command line's instance): it keeps serving, unrecorded.
            _log.Error("{0} serves but is not recorded in the daemon journal ({1}); the command line mounts it again at the next start", op.Mountpoint, cause);
            Finish(MountOperationResult.Done($"{op.Mountpoint} serves, not recorded"));
            return;
        }
        switch (op.Kind)
        {
            case OperationKind.Umount:
                Finish(undone);
                break;
            case OperationKind.Mount:
                _current = op with { Undo = undone };
                op.Child!.Tell(new CloseInstance(op.Id));
                break;
            case OperationKind.Remount when op.Previous is { } previous:
                _current = op with { Undo = undone };
                op.Child!.Tell(new ReplaceInstance(previous.Command, StartOpenLimit()));
                break;
            default:
                Finish(undone);
                break;
        }
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
        Timers.Cancel(OpenLimitTimer);
        _clientGone?.Dispose();
        _clientGone = null;
        Reply(op, result);
        StartNext();
    }

    /// <summary>
    /// The current operation's next open: a fresh ticket, the open's time limit started, and the client's hang-up
    /// (its request's time limit, or a closed connection) watched. Whichever comes first ends the wait.
    /// </summary>
    private OpenTicket StartOpenLimit()
    {
        var op = _current!;
        var ticket = new OpenTicket(op.Id);
        _current = op with { Ticket = ticket };
        Timers.StartSingleTimer(OpenLimitTimer, new OpenLimitPassed(ticket, ClientGone: false), _openTimeout);
        if (_clientGone is null && op.Abandoned.CanBeCanceled)
        {
            var self = Self;
            _clientGone = op.Abandoned.Register(() => self.Tell(new OpenLimitPassed(ticket, ClientGone: true)));
        }
        return ticket;
    }

    /// <summary>
    /// The open of the current operation did not end in time (or its client gave up on it): answer 504 and start the
    /// next request. The open goes on on its thread; its ticket, expired here, makes it dispose whatever it opens.
    /// An open that ended already (claimed) is being attached: its answer is on its way and is waited for.
    /// </summary>
    private void OnOpenLimitPassed(OpenLimitPassed passed)
    {
        if (_current is not { } op || op.Id != passed.Ticket.OperationId) return;
        // The client's hang-up comes through a callback registered once per operation: it expires the open current now.
        var ticket = passed.ClientGone ? op.Ticket : passed.Ticket;
        if (ticket is null || !ReferenceEquals(ticket, op.Ticket) || !ticket.TryExpire()) return;
        var why = passed.ClientGone ? "its client gave up while the image was opened"
            : $"opening {op.Command?.Source} did not end within {_openTimeout.TotalSeconds:0.#} s (nydus.daemon.mount-open-timeout)";
        if (op.Kind == OperationKind.Mount && op.Undo is null)
        {
            // A new child that never attached anything: it goes; the open's late result disposes itself.
            Context.Unwatch(op.Child!);
            Context.Stop(op.Child!);
        }
        _log.Warning("{0} of {1} gave up: {2}; the next request starts, and the open's late result will be discarded",
            op.Kind, op.Mountpoint, why);
        Finish(op.Undo is not null
            ? SwapBackFailed(why)
            : new MountOperationResult(MountErrorKind.Timeout,
                $"{op.Kind.ToString().ToLowerInvariant()} of {op.Mountpoint} was not carried out: {why}"
                + (op.Kind == OperationKind.Remount ? "; the mounted image keeps serving" : "")));
    }

    private MountOperationResult SwapBackFailed(string why) => _current!.Undo! with
    {
        Message = _current.Undo.Message.Replace(", so nothing changed", "")
                  + $"; swapping the previous image back failed too ({why}): the new image serves until a restart mounts the recorded one",
    };

    private static bool SameMount(FsBackendMountCmd mounted, FsBackendMountCmd requested) =>
        mounted.FsType == requested.FsType && mounted.Source == requested.Source && mounted.Config == requested.Config
        && (mounted.PrefetchFiles ?? []).SequenceEqual(requested.PrefetchFiles ?? [], StringComparer.Ordinal);

    private static bool IsNewConfigForSameImage(Entry mounted, FsBackendMountCmd requested) =>
        mounted.Command.FsType == FsBackendType.Rafs && requested.FsType == FsBackendType.Rafs && mounted.Command.Source == requested.Source;

    private void Reply(Operation op, MountOperationResult result)
    {
        if (!result.Succeeded)
            _log.Warning("{0} of {1} failed: {2}", op.Kind, op.Mountpoint, result.Message);
        if (op.IsRestore) RestoreStepDone(op, result);
        else if (!op.ReplyTo.IsNobody()) op.ReplyTo.Tell(result);
    }

    // ---- restore after a restart ----

    private void BeginRestore(RestoreMounts request, IActorRef replyTo)
    {
        if (_restore is not null)
        {
            replyTo.Tell(new MountOperationResult(MountErrorKind.Failed, "a restore of the mount table is already running"));
            return;
        }
        _restore = new RestoreProgress(replyTo, request.FromHandoff is not null ? "the handoff state" : "the journal", request.Required);
        if (request.FromHandoff is { } records)
        {
            Restore(records, fromHandoff: true);
            return;
        }
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
        Restore([.. got.Record.Mounts.Values], fromHandoff: false);
    }

    private void Restore(ImmutableArray<MountRecord> records, bool fromHandoff)
    {
        var restore = _restore!;
        foreach (var record in records)
        {
            if (_table.TryGetValue(record.Mountpoint, out var served))
            {
                // A successor's node ids must be its predecessor's: the same instance at another index would turn
                // what the kernel holds of it into ESTALE.
                if (fromHandoff && served.Index != record.VfsIndex)
                    restore.Failures.Add($"{record.Mountpoint} is served at instance index {served.Index} here, the predecessor served it at {record.VfsIndex}");
                else
                    _log.Info("Not restoring {0} from {1}: it is mounted already", record.Mountpoint, restore.Source);
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
                Id = ++_lastOperationId,
                IsRestore = true,
                FromHandoff = fromHandoff,
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
        foreach (var required in restore.Required)
        {
            if (!_table.ContainsKey(required) && !restore.Failures.Any(f => f.StartsWith(required + ":", StringComparison.Ordinal)))
                restore.Failures.Add($"{required}: the predecessor serves it, but {restore.Source} does not record it (is the work dir missing or damaged?)");
        }
        var message = $"restored {restore.Restored} mount(s) from {restore.Source}";
        if (restore.Failures.Count > 0)
            _log.Error("{0}; {1} could not be mounted again: {2}", message, restore.Failures.Count, string.Join("; ", restore.Failures));
        else _log.Info("{0}", message);
        restore.ReplyTo.Tell(new MountOperationResult(restore.Failures.Count == 0 ? null : MountErrorKind.Failed,
            message, [.. restore.Failures]));
    }

    // ---- a successor's journal catches up ----

    private void OnJournalIsOurs()
    {
        if (!_journalDeferred) return;
        _journalDeferred = false;
        _journal.Ask<DaemonRecord>(GetDaemonRecord.Instance, JournalTimeout).PipeTo(Self,
            success: record => new RecordToCatchUp(record, null),
            failure: e => new RecordToCatchUp(null, e));
    }

    /// <summary>Writes what changed while the journal was the predecessor's: instances it does not record as served
    /// here (mounted through the API meanwhile, or missing from a damaged journal), and unmounts.</summary>
    private void OnRecordToCatchUp(RecordToCatchUp got)
    {
        if (got.Record is not { } record)
        {
            _log.Error("The journal could not be read to record the mount table this daemon took over: {0}", got.Failure?.Message);
            return;
        }
        foreach (var (mountpoint, entry) in _table)
        {
            if (!entry.Persisted) continue;
            var wanted = MountCommands.ToRecord(entry.Command, entry.Index);
            if (record.Mounts.TryGetValue(mountpoint, out var has) && MountCommands.SameRecord(has, wanted)) continue;
            WriteCatchUp(new RecordMount(wanted));
        }
        foreach (var mountpoint in _unmountedWhileDeferred)
        {
            if (_table.ContainsKey(mountpoint) || !record.Mounts.ContainsKey(mountpoint)) continue;
            WriteCatchUp(new RecordUnmount(mountpoint));
        }
        _unmountedWhileDeferred.Clear();
        if (_catchUp.Pending == 0) LogCatchUpDone();
    }

    /// <summary>One write of the catch-up; the line that says the journal is ours comes once every write is answered
    /// (a restart on this work dir right after it finds the table in the journal).</summary>
    private void WriteCatchUp(object command)
    {
        _catchUp.Pending++;
        _journal.Ask<Recorded>(command, JournalTimeout).PipeTo(Self,
            success: _ => new CatchUpWritten(null),
            failure: e => new CatchUpWritten(e));
    }

    private void OnCatchUpWritten(CatchUpWritten written)
    {
        _catchUp.Pending--;
        if (written.Failure is null) _catchUp.Written++;
        else _catchUp.Failures.Add(JournalFailures.Describe(written.Failure));
        if (_catchUp.Pending == 0) LogCatchUpDone();
    }

    private void LogCatchUpDone()
    {
        if (_catchUp.Failures.Count == 0)
            _log.Info("The journal is this daemon's now: {0} change(s) of the mount table written to it", _catchUp.Written);
        else
            _log.Error("The journal is this daemon's now, but {0} of {1} change(s) of the mount table could not be written to it ({2}): a restart on this work dir would not find them",
                _catchUp.Failures.Count, _catchUp.Written + _catchUp.Failures.Count, string.Join("; ", _catchUp.Failures.Distinct()));
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
        // Written here, not by the parent on BackendsChanged: the API's next read after this operation's answer
        // (which follows) must see the table it left.
        _readModel?.PublishBackends(backends);
        Context.Parent.Tell(new BackendsChanged(backends, [.. _table.Values.Select(e => MountCommands.ToRecord(e.Command, e.Index))]));
    }

    private enum OperationKind
    {
        Mount,
        Remount,
        Umount,
    }

    private sealed record Operation(OperationKind Kind, string Mountpoint, FsBackendMountCmd? Command, int Index, bool Persist, IActorRef ReplyTo)
    {
        /// <summary>Unique in this service: what the children's answers and the time limit are matched to.</summary>
        public long Id { get; init; }
        /// <summary>The open under way for this operation, if any.</summary>
        public OpenTicket? Ticket { get; init; }
        public IActorRef? Child { get; init; }
        public CancellationToken Abandoned { get; init; }
        public bool IsRestore { get; init; }
        /// <summary>Set when the journal failed to record this change: the answer once it is undone.</summary>
        public MountOperationResult? Undo { get; init; }
        /// <summary>A remount's table entry before it, to swap back to.</summary>
        public Entry? Previous { get; init; }
        /// <summary>A takeover's restore: the recorded index is required, not just preferred.</summary>
        public bool FromHandoff { get; init; }
        public OpenedInstance? Opened { get; init; }
        /// <summary>Answered once attached; the journal write follows (<see cref="MountFilesystem.AnswerWhenAttached"/>).</summary>
        public bool AnswerWhenAttached { get; init; }
    }

    private sealed record CatchUpWritten(Exception? Failure);

    /// <summary>The open of <see cref="Ticket"/> reached its time limit, or (ClientGone) the operation's client gave up.</summary>
    private sealed record OpenLimitPassed(OpenTicket Ticket, bool ClientGone);

    private sealed class CatchUpProgress
    {
        public int Pending;
        public int Written;
        public readonly List<string> Failures = new();
    }

    private sealed record Entry(IActorRef Child, FsBackendMountCmd Command, MountedBackend Backend, int Index, bool Persisted);

    private sealed class RestoreProgress(IActorRef replyTo, string source, IReadOnlyCollection<string> required)
    {
        public IActorRef ReplyTo { get; } = replyTo;
        public string Source { get; } = source;
        public IReadOnlyCollection<string> Required { get; } = required;
        public int Remaining { get; set; }
        public int Restored { get; set; }
        public List<string> Failures { get; } = [];
    }

    private sealed record RecordToRestore(DaemonRecord? Record, Exception? Failure);

    private sealed record RecordToCatchUp(DaemonRecord? Record, Exception? Failure);

    private sealed record JournalWritten(Operation Operation, string Message);

    private sealed record JournalFailed(Operation Operation, Exception Cause);
}
