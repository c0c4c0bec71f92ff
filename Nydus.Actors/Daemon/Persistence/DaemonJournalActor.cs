using Akka.Actor;
using Akka.Event;
using Akka.Persistence;
using Nydus.Actors.Storage.Cache.Blobs;

namespace Nydus.Actors.Daemon.Persistence;

/// <summary>
/// Event-sources the daemon's durable state (its id, the mount table, the fscache blob entries) into the configured
/// journal, SQLite by default. This is the state a restarted, upgraded or failed-over daemon recovers. Snapshots,
/// deletion of what they cover and write failures are <see cref="RecordJournalActor{TRecord}"/>'s. Its parent,
/// <see cref="DaemonJournalGuard"/>, replaces it after a failed write (Akka.Persistence stops it then) and learns here
/// whether recovery worked.
/// </summary>
public sealed class DaemonJournalActor : RecordJournalActor<DaemonRecord>
{
    private readonly string? _daemonId;

    /// <param name="recordStartAtRecovery">False for a daemon waiting for a takeover: its predecessor still writes this
    /// journal (same id, same work dir), so nothing is written until <see cref="RecordDaemonStart"/>.</param>
    public DaemonJournalActor(string persistenceId, string? daemonId, bool recordStartAtRecovery = true)
        : base(persistenceId, "daemon", DaemonRecord.Empty)
    {
        _daemonId = daemonId;

        Recover<RecoveryCompleted>(_ =>
        {
            Log.Info("Recovered daemon record {PersistenceId}: {StartCount} earlier starts, {MountCount} mounts",
                PersistenceId, Record.StartCount, Record.Mounts.Count);
            // The guard learns the state once this start is recorded (or at once when it is not to be).
            if (recordStartAtRecovery) RecordStart();
            else Context.Parent.Tell(new StoreState(Record));
        });

        Command<GetDaemonRecord>(_ => Sender.Tell(Record));
        // Persist holds commands until its write is done, so this answer follows every earlier write.
        Command<FlushJournal>(_ => Sender.Tell(JournalFlushed.Instance));
        Command<RecordDaemonStart>(_ => RecordStart());
        Command<RecordMount>(c => Write(new FilesystemMounted(c.Mount), Sender));
        Command<RecordUnmount>(c => Write(new FilesystemUnmounted(c.Mountpoint), Sender));
        // The blob cache's layer does not know the daemon record: it is answered with its own acknowledgement.
        Command<RecordBlobEntryAdded>(c => Write(new BlobEntryAdded(c.Key, c.Entry), Sender, blobReply: true));
        Command<RecordBlobEntryRemoved>(c => Write(new BlobEntryRemoved(c.DomainId, c.BlobId), Sender, blobReply: true));
    }

    public static Props Props(string persistenceId, string? daemonId, bool recordStartAtRecovery = true) =>
        Akka.Actor.Props.Create(() => new DaemonJournalActor(persistenceId, daemonId, recordStartAtRecovery));

    protected override DaemonRecord Apply(DaemonRecord record, IDaemonJournalPersisted evt) => record.Apply(evt);

    protected override void ReportUnreadable(string description) => Context.Parent.Tell(new StoreRecoveryFailed(description));

    protected override void OnWriteFailed() => Context.Parent.Tell(StoreWriteFailed.Instance);

    private void RecordStart() =>
        Write(new DaemonStarted(_daemonId, DateTimeOffset.UtcNow, DaemonVersion.PackageVersion), null);

    private void Write(IDaemonJournalPersisted evt, IActorRef? replyTo, bool blobReply = false) =>
        PersistAndApply(evt, replyTo, record =>
        {
            Context.Parent.Tell(new StoreState(record));
            replyTo?.Tell(blobReply ? BlobJournalRecorded.Instance : new Recorded(record));
        });
}
