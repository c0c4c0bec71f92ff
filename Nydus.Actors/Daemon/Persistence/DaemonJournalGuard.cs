using Akka.Actor;
using Akka.Event;
using Nydus.Actors.Storage.Cache.Blobs;

namespace Nydus.Actors.Daemon.Persistence;

/// <summary>
/// Keeps the daemon's journal usable across persistence failures. Akka.Persistence stops a persistent actor whose
/// write failed; this parent (the stable address the daemon and its filesystem service talk to) then starts a fresh
/// <see cref="DaemonJournalActor"/>, which reads what is really on disk, so one failed write (a full disk, a read-only
/// work dir) costs only the request that made it: that request is answered with the cause and nothing else stops.
/// A journal that cannot be read at start is different: the daemon must not serve as if it had no mounts, so the
/// daemon is told (<see cref="DaemonJournalUnreadable"/>) and this actor stops. Later read failures leave the journal
/// unavailable: each request is answered with the cause and tries it again.
/// </summary>
public sealed class DaemonJournalGuard : ReceiveActor, IWithUnboundedStash
{
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly string _persistenceId;
    private readonly string? _daemonId;
    private IActorRef _store = ActorRefs.Nobody;
    private int _generation;
    private bool _everRecovered;
    // A write has failed in this process: SQLite connections pooled since may have been opened on a read-only work
    // dir, and such a connection stays read-only after the dir is writable again. Writes then start from fresh ones.
    private bool _writeFailed;
    private string _unavailable = "";
    // The state the store last reported: reads are answered from it, so that no read waits behind (or is lost with)
    // a write that fails.
    private DaemonRecord _record = DaemonRecord.Empty;

    public IStash Stash { get; set; } = null!;

    public DaemonJournalGuard(string persistenceId, string? daemonId, bool recordStartAtRecovery)
    {
        _persistenceId = persistenceId;
        _daemonId = daemonId;
        StartStore(recordStartAtRecovery);
        Become(Recovering);
    }

    public static Props Props(string persistenceId, string? daemonId, bool recordStartAtRecovery = true) =>
        Akka.Actor.Props.Create(() => new DaemonJournalGuard(persistenceId, daemonId, recordStartAtRecovery));

    /// <summary>A store that throws is stopped (Akka.Persistence stops it on journal failures anyway): its
    /// replacement recovers from the journal instead of trusting the state the failed one held.</summary>
    protected override SupervisorStrategy SupervisorStrategy() => new OneForOneStrategy(_ => Directive.Stop);

    private void StartStore(bool recordStart)
    {
        _store = Context.ActorOf(DaemonJournalActor.Props(_persistenceId, _daemonId, recordStart), $"store-{++_generation}");
        Context.Watch(_store);
    }

    private void Recovering()
    {
        Receive<StoreState>(_ => Sender.Equals(_store), s =>
        {
            _record = s.Record;
            if (_everRecovered) _log.Info("The daemon journal is usable again");
            _everRecovered = true;
            Become(Ready);
            Stash.UnstashAll();
        });
        Receive<StoreRecoveryFailed>(f => Sender.Equals(_store), f => RecoveryFailed(f.Description));
        // Recovered, but recording this start failed: the store stops; its successor reads the journal again.
        Receive<StoreWriteFailed>(_ => Sender.Equals(_store), _ =>
        {
            _writeFailed = true;
            Become(Replacing);
        });
        Receive<Terminated>(t => t.ActorRef.Equals(_store), _ => RecoveryFailed("the journal stopped while it was being read"));
        Receive<Terminated>(_ => { });
        ReceiveAny(_ => Stash.Stash());
    }

    private void Ready()
    {
        Receive<StoreWriteFailed>(_ => Sender.Equals(_store), _ =>
        {
            _writeFailed = true;
            Become(Replacing);
        });
        Receive<RecordMount>(_ => _writeFailed, ForwardWrite);
        Receive<RecordUnmount>(_ => _writeFailed, ForwardWrite);
        Receive<RecordBlobEntryAdded>(_ => _writeFailed, ForwardWrite);
        Receive<RecordBlobEntryRemoved>(_ => _writeFailed, ForwardWrite);
        Receive<Terminated>(t => t.ActorRef.Equals(_store), _ => ReplaceStore("the journal stopped"));
        Receive<Terminated>(_ => { });
        Receive<StoreState>(_ => Sender.Equals(_store), s => _record = s.Record);
        Receive<GetDaemonRecord>(_ => Sender.Tell(_record));
        Receive<GetRecordedBlobEntries>(_ => Sender.Tell(new RecordedBlobEntries(_record.Blobs)));
        Receive<StoreState>(_ => { });
        ReceiveAny(m => _store.Forward(m));
    }

    private void ForwardWrite(object write)
    {
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        _store.Forward(write);
    }

    /// <summary>The store failed a write and is stopping: hold requests until it has, then start its successor
    /// (two actors of one persistence id must never run at once).</summary>
    private void Replacing()
    {
        Receive<Terminated>(t => t.ActorRef.Equals(_store), _ => ReplaceStore("a write failed"));
        Receive<Terminated>(_ => { });
        ReceiveAny(_ => Stash.Stash());
    }

    private void Unavailable()
    {
        Receive<Terminated>(_ => { });
        // Nothing can be in flight while no store runs.
        Receive<FlushJournal>(_ => Sender.Tell(JournalFlushed.Instance));
        ReceiveAny(_ =>
        {
            // Try again for this request; if reading still fails it is answered with the cause.
            Stash.Stash();
            StartStore(recordStart: false);
            Become(Recovering);
        });
    }

    private void ReplaceStore(string why)
    {
        _log.Warning("Reading the daemon journal again ({0})", why);
        // The start was recorded (or its failure reported) by the first store.
        StartStore(recordStart: false);
        Become(Recovering);
    }

    private void RecoveryFailed(string description)
    {
        if (!_everRecovered)
        {
            Context.Parent.Tell(new DaemonJournalUnreadable(description));
            Context.Stop(Self);
            return;
        }
        _log.Error("The daemon journal cannot be read ({0}); mount table changes are refused until it can", description);
        _unavailable = description;
        Context.Unwatch(_store);
        Become(Unavailable);
        foreach (var envelope in Stash.ClearStash())
            if (!envelope.Sender.IsNobody())
                envelope.Sender.Tell(new Status.Failure(new JournalWriteException($"the daemon journal cannot be read: {_unavailable}", null)));
    }
}

/// <summary>From a store to its guard: the state after recovery (and after this start is recorded), then after
/// every event; the first one after a store starts means requests can flow.</summary>
internal sealed record StoreState(DaemonRecord Record);

/// <summary>From a store to its guard: recovery failed (the store stops).</summary>
internal sealed record StoreRecoveryFailed(string Description);

/// <summary>From a store to its guard: a write failed and the store is stopping.</summary>
internal sealed record StoreWriteFailed
{
    public static readonly StoreWriteFailed Instance = new();
}

/// <summary>To the daemon: the journal could not be read at start; the daemon must not serve as if it were empty.</summary>
public sealed record DaemonJournalUnreadable(string Description);

/// <summary>The journal did not record a change (the request that asked for it is answered with this).</summary>
public sealed class JournalWriteException(string message, Exception? inner) : IOException(message, inner);
