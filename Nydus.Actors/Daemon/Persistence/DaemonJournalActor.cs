using Akka.Actor;
using Akka.Event;
using Akka.Persistence;

namespace Nydus.Actors.Daemon.Persistence;

/// <summary>
/// Event-sources the daemon's durable state (its id, the mount table) into the configured journal, SQLite by
/// default. This is the state a restarted, upgraded or failed-over daemon recovers. Snapshots every
/// <see cref="SnapshotInterval"/> events keep recovery short; older events and snapshots are deleted once a newer
/// snapshot is safe.
/// </summary>
public sealed class DaemonJournalActor : ReceivePersistentActor
{
    public const int SnapshotInterval = 100;

    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly string? _daemonId;
    private DaemonRecord _record = DaemonRecord.Empty;

    public override string PersistenceId { get; }

    /// <param name="recordStartAtRecovery">False for a daemon waiting for a takeover: its predecessor still writes this
    /// journal (same id, same work dir), so nothing is written until <see cref="RecordDaemonStart"/>.</param>
    public DaemonJournalActor(string persistenceId, string? daemonId, bool recordStartAtRecovery = true)
    {
        PersistenceId = persistenceId;
        _daemonId = daemonId;

        Recover<SnapshotOffer>(offer =>
        {
            if (offer.Snapshot is DaemonRecord record) _record = record;
        });
        Recover<IDaemonJournalPersisted>(evt => _record = _record.Apply(evt));
        Recover<RecoveryCompleted>(_ =>
        {
            _log.Info("Recovered daemon record {PersistenceId}: {StartCount} earlier starts, {MountCount} mounts",
                PersistenceId, _record.StartCount, _record.Mounts.Count);
            if (recordStartAtRecovery) RecordStart();
        });

        Command<GetDaemonRecord>(_ => Sender.Tell(_record));
        Command<RecordDaemonStart>(_ => RecordStart());
        Command<RecordMount>(c => PersistAndApply(new FilesystemMounted(c.Mount), Sender));
        Command<RecordUnmount>(c => PersistAndApply(new FilesystemUnmounted(c.Mountpoint), Sender));
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

    private void PersistAndApply(IDaemonJournalPersisted evt, IActorRef? replyTo)
    {
        Persist(evt, e =>
        {
            _record = _record.Apply(e);
            replyTo?.Tell(new Recorded(_record));
            if (LastSequenceNr % SnapshotInterval == 0) SaveSnapshot(_record);
        });
    }
}
