using Akka.Actor;
using Akka.Event;
using Akka.Persistence;

namespace Nydus.Actors.Daemon.Persistence;

/// <summary>
/// What every journal of the daemon shares: it event-sources one immutable record (the daemon's mount table, the
/// block service's exports) under its own persistence id, with a pure <see cref="Apply"/>; it snapshots every
/// <see cref="SnapshotInterval"/> events and then deletes what the snapshot covers, so recovery stays short; and a
/// write that fails is answered with its cause while the record stays as it was. Akka.Persistence stops the actor
/// after a failed write; its parent starts a fresh one, which reads what is really on disk.
/// </summary>
/// <typeparam name="TRecord">The record; it is also the snapshot.</typeparam>
public abstract class RecordJournalActor<TRecord> : ReceivePersistentActor where TRecord : class
{
    public const int SnapshotInterval = 100;

    private readonly string _what;
    // Who waits for the write in flight (Persist holds other commands until it is done, so there is one at most).
    private IActorRef? _writeReplyTo;

    /// <summary>The state recovered and recorded so far.</summary>
    protected TRecord Record { get; private set; }

    public override string PersistenceId { get; }

    /// <param name="what">Names this journal in logs and snapshot errors ("daemon", "block service").</param>
    protected RecordJournalActor(string persistenceId, string what, TRecord empty)
    {
        PersistenceId = persistenceId;
        _what = what;
        Record = empty;

        Recover<SnapshotOffer>(offer =>
        {
            // A snapshot of another shape is not an empty record: fail the recovery rather than drop the state.
            Record = offer.Snapshot as TRecord
                     ?? throw new InvalidOperationException($"snapshot {offer.Metadata.SequenceNr} of {persistenceId} is a {offer.Snapshot?.GetType().Name ?? "null"}, not a {what} record");
        });
        Recover<IDaemonJournalPersisted>(evt => Record = Apply(Record, evt));

        Command<SaveSnapshotSuccess>(s =>
        {
            var upTo = s.Metadata.SequenceNr;
            DeleteMessages(upTo);
            DeleteSnapshots(new SnapshotSelectionCriteria(upTo - 1));
        });
        Command<SaveSnapshotFailure>(f => Log.Warning(f.Cause, "Saving a {0} snapshot failed", _what));
        Command<DeleteMessagesSuccess>(_ => { });
        Command<DeleteMessagesFailure>(f => Log.Warning(f.Cause, "Deleting old {0} events failed", _what));
        Command<DeleteSnapshotsSuccess>(_ => { });
        Command<DeleteSnapshotsFailure>(f => Log.Warning(f.Cause, "Deleting old {0} snapshots failed", _what));
    }

    /// <summary>The record after one event: pure, the same in recovery and after a write.</summary>
    protected abstract TRecord Apply(TRecord record, IDaemonJournalPersisted evt);

    /// <summary>The journal cannot be replayed: tell the parent, which decides what that means for its service.</summary>
    protected abstract void ReportUnreadable(string description);

    /// <summary>A write failed (not a rejection): the parent may have to replace this actor.</summary>
    protected virtual void OnWriteFailed() { }

    /// <summary>Writes <paramref name="evt"/>; once it is durable, applies it and calls <paramref name="recorded"/> with
    /// the new record. A failed write answers <paramref name="replyTo"/> with the cause instead.</summary>
    protected void PersistAndApply(IDaemonJournalPersisted evt, IActorRef? replyTo, Action<TRecord> recorded)
    {
        _writeReplyTo = replyTo;
        Persist(evt, e =>
        {
            _writeReplyTo = null;
            Record = Apply(Record, e);
            recorded(Record);
            if (LastSequenceNr % SnapshotInterval == 0) SaveSnapshot(Record);
        });
    }

    /// <summary>The journal did not take the event (a full disk, a read-only work dir, I/O): the requester gets the
    /// cause and the record stays as it was. Akka.Persistence stops this actor next.</summary>
    protected override void OnPersistFailure(Exception cause, object @event, long sequenceNr)
    {
        var what = JournalFailures.Describe(cause);
        Log.Error("The {0} journal could not record {1} (event {2}): {3}", _what, @event.GetType().Name, sequenceNr, what);
        FailWrite($"the daemon journal could not record it: {what}", cause);
        OnWriteFailed();
    }

    protected override void OnPersistRejected(Exception cause, object @event, long sequenceNr)
    {
        var what = JournalFailures.Describe(cause);
        Log.Error("The {0} journal rejected {1} (event {2}): {3}", _what, @event.GetType().Name, sequenceNr, what);
        FailWrite($"the daemon journal rejected it: {what}", cause);
    }

    /// <summary>One line naming the cause instead of a stack trace.</summary>
    protected override void OnRecoveryFailure(Exception reason, object? message = null)
    {
        var at = message is null ? "" : $" at {message.GetType().Name}";
        var description = $"the journal of {PersistenceId} cannot be replayed{at} (last good event {LastSequenceNr}): {JournalFailures.Describe(reason)}";
        Log.Error("{0}", description);
        ReportUnreadable(description);
    }

    private void FailWrite(string message, Exception cause)
    {
        _writeReplyTo?.Tell(new Status.Failure(new JournalWriteException(message, cause)));
        _writeReplyTo = null;
    }
}
