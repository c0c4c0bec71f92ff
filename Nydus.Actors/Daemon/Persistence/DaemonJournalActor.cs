using Akka.Actor;
using Akka.Event;
using Akka.Persistence;
using Nydus.Actors.Storage.Cache.Blobs;

namespace Nydus.Actors.Daemon.Persistence;

/// <summary>
/// Event-sources the daemon's durable state (its id, the mount table) into the configured journal, SQLite by
/// default. This is the state a restarted, upgraded or failed-over daemon recovers. Snapshots every
/// <see cref="SnapshotInterval"/> events keep recovery short; older events and snapshots are deleted once a newer
/// snapshot is safe. Its parent, <see cref="DaemonJournalGuard"/>, replaces it after a failed write (Akka.Persistence
/// stops it then) and learns here whether recovery worked.
/// </summary>
public sealed class DaemonJournalActor : ReceivePersistentActor
{
    public const int SnapshotInterval = 100;

    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly string? _daemonId;
    private DaemonRecord _record = DaemonRecord.Empty;
    // Who waits for the write in flight (Persist holds other commands until it is done, so there is one at most).
    private IActorRef? _writeReplyTo;

    public override string PersistenceId { get; }

    /// <param name="recordStartAtRecovery">False for a daemon waiting for a takeover: its predecessor still writes this
    /// journal (same id, same work dir), so nothing is written until <see cref="RecordDaemonStart"/>.</param>
    public DaemonJournalActor(string persistenceId, string? daemonId, bool recordStartAtRecovery = true)
    {
        PersistenceId = persistenceId;
        _daemonId = daemonId;

        Recover<SnapshotOffer>(offer =>
        {
            // A snapshot of another shape is not an empty table: fail the recovery rather than drop the mounts.
            _record = offer.Snapshot as DaemonRecord
                      ?? throw new InvalidOperationException($"snapshot {offer.Metadata.SequenceNr} of {persistenceId} is a {offer.Snapshot?.GetType().Name ?? "null"}, not a daemon record");
        });
        Recover<IDaemonJournalPersisted>(evt => _record = _record.Apply(evt));
        Recover<RecoveryCompleted>(_ =>
        {
            _log.Info("Recovered daemon record {PersistenceId}: {StartCount} earlier starts, {MountCount} mounts",
                PersistenceId, _record.StartCount, _record.Mounts.Count);
            // The guard learns the state once this start is recorded (or at once when it is not to be).
            if (recordStartAtRecovery) RecordStart();
            else Context.Parent.Tell(new StoreState(_record));
        });

        Command<GetDaemonRecord>(_ => Sender.Tell(_record));
        // Persist holds commands until its write is done, so this answer follows every earlier write.
        Command<FlushJournal>(_ => Sender.Tell(JournalFlushed.Instance));
        Command<RecordDaemonStart>(_ => RecordStart());
        Command<RecordMount>(c => PersistAndApply(new FilesystemMounted(c.Mount), Sender));
        Command<RecordUnmount>(c => PersistAndApply(new FilesystemUnmounted(c.Mountpoint), Sender));
        Command<RecordBlobEntryAdded>(c => PersistAndApply(new BlobEntryAdded(c.Key, c.Entry), Sender, blobReply: true));
        Command<RecordBlobEntryRemoved>(c => PersistAndApply(new BlobEntryRemoved(c.DomainId, c.BlobId), Sender, blobReply: true));
        Command<SaveSnapshotSuccess>(s =>
        {
            var upTo = s.Metadata.SequenceNr;
            DeleteMessages(upTo);
            DeleteSnapshots(new SnapshotSelectionCriteria(upTo - 1));
        });
        Command<SaveSnapshotFailure>(f => _log.Warning(f.Cause, "Saving a daemon snapshot failed"));
        Command<DeleteMessagesSuccess>(_ => { });
        Command<DeleteMessagesFailure>(f => _log.Warning(f.Cause, "Deleting old daemon events failed"));
        Command<DeleteSnapshotsSuccess>(_ => { });
        Command<DeleteSnapshotsFailure>(f => _log.Warning(f.Cause, "Deleting old daemon snapshots failed"));
    }

    public static Props Props(string persistenceId, string? daemonId, bool recordStartAtRecovery = true) =>
        Akka.Actor.Props.Create(() => new DaemonJournalActor(persistenceId, daemonId, recordStartAtRecovery));

    private void RecordStart() =>
        PersistAndApply(new DaemonStarted(_daemonId, DateTimeOffset.UtcNow, DaemonVersion.PackageVersion), null);

    /// <param name="blobReply">Answer with the blob cache's acknowledgement (its layer does not know the daemon record).</param>
    private void PersistAndApply(IDaemonJournalPersisted evt, IActorRef? replyTo, bool blobReply = false)
    {
        _writeReplyTo = replyTo;
        Persist(evt, e =>
        {
            _writeReplyTo = null;
            _record = _record.Apply(e);
            Context.Parent.Tell(new StoreState(_record));
            replyTo?.Tell(blobReply ? BlobJournalRecorded.Instance : new Recorded(_record));
            if (LastSequenceNr % SnapshotInterval == 0) SaveSnapshot(_record);
        });
    }

    /// <summary>The journal did not take the event (a full disk, a read-only work dir, I/O): the requester gets the
    /// cause and the state stays as it was. Akka.Persistence stops this actor next; the guard starts a fresh one.</summary>
    protected override void OnPersistFailure(Exception cause, object @event, long sequenceNr)
    {
        var what = JournalFailures.Describe(cause);
        _log.Error("The daemon journal could not record {0} (event {1}): {2}", @event.GetType().Name, sequenceNr, what);
        _writeReplyTo?.Tell(new Status.Failure(new JournalWriteException($"the daemon journal could not record it: {what}", cause)));
        _writeReplyTo = null;
        Context.Parent.Tell(StoreWriteFailed.Instance);
    }

    protected override void OnPersistRejected(Exception cause, object @event, long sequenceNr)
    {
        var what = JournalFailures.Describe(cause);
        _log.Error("The daemon journal rejected {0} (event {1}): {2}", @event.GetType().Name, sequenceNr, what);
        _writeReplyTo?.Tell(new Status.Failure(new JournalWriteException($"the daemon journal rejected it: {what}", cause)));
        _writeReplyTo = null;
    }

    /// <summary>One line naming the cause instead of a stack trace; the guard decides what it means.</summary>
    protected override void OnRecoveryFailure(Exception reason, object? message = null)
    {
        var at = message is null ? "" : $" at {message.GetType().Name}";
        var description = $"the journal of {PersistenceId} cannot be replayed{at} (last good event {LastSequenceNr}): {JournalFailures.Describe(reason)}";
        _log.Error("{0}", description);
        Context.Parent.Tell(new StoreRecoveryFailed(description));
    }
}
