using Akka.Actor;
using Akka.Event;
using Akka.Persistence;

namespace Nydus.Actors.Daemon.Persistence;

/// <summary>
/// Event-sources the block service's exports (<see cref="BlockServiceRecord"/>) under the persistence id
/// "&lt;daemon's&gt;-block", in the daemon's journal. Writes only when its parent asks (an export added or removed),
/// so a successor that waits for a takeover writes nothing until its block service may serve. As the daemon's
/// journal, it snapshots every <see cref="DaemonJournalActor.SnapshotInterval"/> events and deletes what the
/// snapshot covers. A failed write is answered with the cause; Akka.Persistence then stops this actor and the parent
/// starts a fresh one, which reads what is really on disk.
/// </summary>
public sealed class BlockJournalActor : ReceivePersistentActor
{
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private BlockServiceRecord _record = BlockServiceRecord.Empty;
    private IActorRef? _writeReplyTo;

    public override string PersistenceId { get; }

    public BlockJournalActor(string persistenceId)
    {
        PersistenceId = persistenceId;
        Recover<SnapshotOffer>(offer =>
        {
            _record = offer.Snapshot as BlockServiceRecord
                      ?? throw new InvalidOperationException($"snapshot {offer.Metadata.SequenceNr} of {persistenceId} is a {offer.Snapshot?.GetType().Name ?? "null"}, not a block service record");
        });
        Recover<IDaemonJournalPersisted>(evt => _record = _record.Apply(evt));
        Recover<RecoveryCompleted>(_ =>
        {
            _log.Info("Recovered block service record {0}: {1} exports", PersistenceId, _record.Exports.Count);
            Context.Parent.Tell(new BlockJournalRecovered(_record));
        });

        Command<RecordBlockExport>(c => PersistAndApply(new BlockExportAdded(c.Export)));
        Command<RecordBlockUnexport>(c => PersistAndApply(new BlockExportRemoved(c.Name)));
        Command<SaveSnapshotSuccess>(s =>
        {
            DeleteMessages(s.Metadata.SequenceNr);
            DeleteSnapshots(new SnapshotSelectionCriteria(s.Metadata.SequenceNr - 1));
        });
        Command<SaveSnapshotFailure>(f => _log.Warning(f.Cause, "Saving a block service snapshot failed"));
        Command<DeleteMessagesSuccess>(_ => { });
        Command<DeleteMessagesFailure>(f => _log.Warning(f.Cause, "Deleting old block service events failed"));
        Command<DeleteSnapshotsSuccess>(_ => { });
        Command<DeleteSnapshotsFailure>(f => _log.Warning(f.Cause, "Deleting old block service snapshots failed"));
    }

    public static Props Props(string persistenceId) => Akka.Actor.Props.Create(() => new BlockJournalActor(persistenceId));

    private void PersistAndApply(IDaemonJournalPersisted evt)
    {
        var replyTo = Sender;
        _writeReplyTo = replyTo;
        Persist(evt, e =>
        {
            _writeReplyTo = null;
            _record = _record.Apply(e);
            replyTo.Tell(new BlockRecorded(_record));
            if (LastSequenceNr % DaemonJournalActor.SnapshotInterval == 0) SaveSnapshot(_record);
        });
    }

    protected override void OnPersistFailure(Exception cause, object @event, long sequenceNr)
    {
        var what = JournalFailures.Describe(cause);
        _log.Error("The block journal could not record {0} (event {1}): {2}", @event.GetType().Name, sequenceNr, what);
        _writeReplyTo?.Tell(new Status.Failure(new JournalWriteException($"the daemon journal could not record it: {what}", cause)));
        _writeReplyTo = null;
    }

    protected override void OnPersistRejected(Exception cause, object @event, long sequenceNr)
    {
        var what = JournalFailures.Describe(cause);
        _log.Error("The block journal rejected {0} (event {1}): {2}", @event.GetType().Name, sequenceNr, what);
        _writeReplyTo?.Tell(new Status.Failure(new JournalWriteException($"the daemon journal rejected it: {what}", cause)));
        _writeReplyTo = null;
    }

    protected override void OnRecoveryFailure(Exception reason, object? message = null)
    {
        var description = $"the journal of {PersistenceId} cannot be replayed (last good event {LastSequenceNr}): {JournalFailures.Describe(reason)}";
        _log.Error("{0}", description);
        Context.Parent.Tell(new BlockJournalUnreadable(description));
    }
}
