using Akka.Actor;
using Akka.Event;
using Akka.Persistence;

namespace Nydus.Actors.Daemon.Persistence;

/// <summary>
/// Event-sources the block service's exports (<see cref="BlockServiceRecord"/>) under the persistence id
/// "&lt;daemon's&gt;-block", in the daemon's journal. Writes only when its parent asks (an export added or removed),
/// so a successor that waits for a takeover writes nothing until its block service may serve. Snapshots and write
/// failures are <see cref="RecordJournalActor{TRecord}"/>'s; after a failed write the parent starts a fresh one.
/// </summary>
public sealed class BlockJournalActor : RecordJournalActor<BlockServiceRecord>
{
    public BlockJournalActor(string persistenceId) : base(persistenceId, "block service", BlockServiceRecord.Empty)
    {
        Recover<RecoveryCompleted>(_ =>
        {
            Log.Info("Recovered block service record {0}: {1} exports", PersistenceId, Record.Exports.Count);
            Context.Parent.Tell(new BlockJournalRecovered(Record));
        });

        Command<RecordBlockExport>(c => Write(new BlockExportAdded(c.Export)));
        Command<RecordBlockUnexport>(c => Write(new BlockExportRemoved(c.Name)));
    }

    public static Props Props(string persistenceId) => Akka.Actor.Props.Create(() => new BlockJournalActor(persistenceId));

    protected override BlockServiceRecord Apply(BlockServiceRecord record, IDaemonJournalPersisted evt) => record.Apply(evt);

    protected override void ReportUnreadable(string description) => Context.Parent.Tell(new BlockJournalUnreadable(description));

    private void Write(IDaemonJournalPersisted evt)
    {
        var replyTo = Sender;
        PersistAndApply(evt, replyTo, record => replyTo.Tell(new BlockRecorded(record)));
    }
}
