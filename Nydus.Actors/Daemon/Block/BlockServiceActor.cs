using System.Collections.Immutable;
using Akka.Actor;
using Akka.Event;
using Nydus.Actors.Block;
using Nydus.Actors.Block.Nbd;
using Nydus.Actors.Config;
using Nydus.Actors.Daemon.Persistence;
using Nydus.Actors.Rafs;
using Nydus.Actors.Storage;

namespace Nydus.Actors.Daemon.Block;

/// <summary>
/// The daemon's block service (issue 17): images served as read-only NBD exports on Unix sockets and TCP
/// addresses, added and removed through the API, recorded in the daemon's journal (<see cref="BlockJournalActor"/>,
/// its child) and served again after a restart or by a successor. One change at a time: opening an image and
/// binding its address run off the actor (piped back as messages) while other changes wait; listing is answered at
/// once. Reads never pass through here: each NBD connection reads the device on its own async loop.
/// States: Recovering (journal replay) → Waiting (a successor before its daemon runs: its predecessor still holds the
/// addresses) → Restoring (the recorded exports are opened and bound) → Serving ⇄ Changing; Unavailable when the
/// journal cannot be read (nothing served; the handoff state then leaves the exports out, so a successor reads the
/// journal itself). A takeover's table is served even over an unreadable journal (listed "unrecorded"): it rides
/// on in the next handoff state, and changes are refused since none could be recorded.
/// </summary>
public sealed class BlockServiceActor : ReceiveActor, IWithUnboundedStash
{
    /// <summary>How long a restore waits for an address its predecessor still listens on (the old daemon closes
    /// its listeners as it exits, which the supervisor's sequence lets it finish before the successor runs).</summary>
    public static readonly TimeSpan AddressWaitLimit = TimeSpan.FromSeconds(15);

    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly string _persistenceId;
    private readonly Storage.Cache.BlobCacheRegistry _caches;
    private readonly NbdListenerSet _listeners = new();
    // Every recorded export, served or not (a restored one that failed stays recorded, listed as failed).
    private readonly SortedDictionary<string, ServedExport> _exports = new(StringComparer.Ordinal);
    private IActorRef _journal = ActorRefs.Nobody;
    private int _journalGeneration;
    private bool _mayServe;
    private BlockServiceRecord _recovered = BlockServiceRecord.Empty;
    // Where _recovered came from: the handoff state of a takeover, or the journal.
    private string _restoreSource = "the journal";
    // What the journal's first recovery read (null until then). A takeover serves the handoff state's table without
    // waiting for it; the journal, which the predecessor wrote up to its exit, may know changes made after the last
    // sendfd, so once both are there the served table is brought in line with it (Reconcile), whichever came first.
    private BlockServiceRecord? _journalRecord;
    private bool _tableFromHandoff;
    private bool _reconciled;
    private string _state = "recovering";
    private string _unavailable = "";
    // Why the journal cannot be read, once it could not: the service may still serve a takeover's table, but it
    // records nothing, refuses changes (a write would go to a journal that is gone) and starts no new journal.
    private string? _journalUnreadable;

    public IStash Stash { get; set; } = null!;

    /// <param name="persistenceId">The block service's own persistence id in the daemon's journal.</param>
    /// <param name="caches">The daemon's blob caches, where an export with a cached backend opens its cache.</param>
    /// <param name="waitForRun">A successor waiting for a takeover: serve nothing and write nothing until
    /// <see cref="BlockServiceMayServe"/>.</param>
    public BlockServiceActor(string persistenceId, Storage.Cache.BlobCacheRegistry caches, bool waitForRun)
    {
        _persistenceId = persistenceId;
        _caches = caches;
        _mayServe = !waitForRun;
        StartJournal();
        Become(Recovering);
    }

    public static Props Props(string persistenceId, Storage.Cache.BlobCacheRegistry caches, bool waitForRun) =>
        Akka.Actor.Props.Create(() => new BlockServiceActor(persistenceId, caches, waitForRun));

    /// <summary>A journal that fails is replaced by the Terminated handler, never restarted in place.</summary>
    protected override SupervisorStrategy SupervisorStrategy() => new OneForOneStrategy(_ => Directive.Stop);

    protected override void PostStop() => _listeners.Dispose();

    private void StartJournal()
    {
        _journal = Context.ActorOf(BlockJournalActor.Props(_persistenceId), $"journal-{++_journalGeneration}");
        Context.Watch(_journal);
    }

    private void Recovering()
    {
        Receive<BlockJournalRecovered>(r =>
        {
            _journalRecord = r.Record;
            _recovered = r.Record;
            Stash.UnstashAll();
            if (_mayServe) BeginRestore();
            else
            {
                _state = "waiting";
                Become(Waiting);
            }
        });
        Receive<RestoreBlockExports>(r =>
        {
            // A takeover: the predecessor's table is here, no need to wait for the journal (it goes on recovering,
            // for the writes to come, and is compared with the served table once read).
            TakeHandoffTable(r);
            Stash.UnstashAll();
            if (_mayServe) BeginRestore();
            else
            {
                _state = "waiting";
                Become(Waiting);
            }
        });
        Receive<BlockJournalUnreadable>(u => BecomeUnavailable(u.Description));
        Receive<Terminated>(t => t.ActorRef.Equals(_journal), _ => BecomeUnavailable("the block journal stopped while it was being read"));
        Receive<BlockServiceMayServe>(_ => _mayServe = true);
        Receive<ListBlockExports>(_ => Sender.Tell(List()));
        ReceiveAny(_ => Stash.Stash());
    }

    private void Waiting()
    {
        Receive<BlockServiceMayServe>(_ => BeginRestore());
        Receive<RestoreBlockExports>(TakeHandoffTable);
        Receive<GetBlockExportRecords>(_ => Sender.Tell(new BlockExportRecords([.. _recovered.Exports.Values])));
        Receive<BlockJournalRecovered>(_ => _journalRecord is null, r =>
        {
            _journalRecord = r.Record;
            if (!_tableFromHandoff) _recovered = r.Record;
        });
        Receive<ListBlockExports>(_ => Sender.Tell(List()));
        Receive<ExportBlockDevice>(_ => Sender.Tell(NotYet()));
        Receive<UnexportBlockDevice>(_ => Sender.Tell(NotYet()));
        ReceiveJournalReplacement();
    }

    private void TakeHandoffTable(RestoreBlockExports restore)
    {
        _recovered = new BlockServiceRecord(restore.Exports.ToImmutableSortedDictionary(e => e.Name, e => e, StringComparer.Ordinal));
        _restoreSource = "the handoff state";
        _tableFromHandoff = true;
    }

    private static BlockServiceResult NotYet() => BlockServiceResult.Fail(BlockErrorKind.NotReady,
        "the block service of a daemon waiting for a takeover changes nothing until it runs (its predecessor serves the exports)");

    private void BeginRestore() => BeginRestore([.. _recovered.Exports.Values], _restoreSource);

    private void BeginRestore(BlockExportRecord[] records, string source)
    {
        _state = "restoring";
        _log.Info("Restoring {0} block exports from {1}", records.Length, source);
        // One step for all of them; each result is kept, so one image that fails does not keep the others down.
        Task.Run(async () =>
        {
            var results = new List<OpenResult>();
            foreach (var record in records) results.Add(await OpenAsync(record, waitForAddress: true));
            return new Restored(results);
        }).PipeTo(Self, failure: e => new Restored([.. records.Select(r => new OpenResult(r, new ServedExport(r, null, e.Message), BlockErrorKind.Invalid))]));
        Become(Restoring);
    }

    /// <summary>
    /// A takeover served the handoff state's table; now the journal is read: exports recorded since the last sendfd
    /// are served too, and exports removed since are removed (the supervisor's state is only as new as its last save).
    /// </summary>
    private void Reconcile(BlockServiceRecord journalRecord)
    {
        _reconciled = true;
        var journal = journalRecord.Exports;
        foreach (var (name, served) in _exports.Where(e => !journal.ContainsKey(e.Key)).ToArray())
        {
            _exports.Remove(name);
            if (served.Export is not null) _listeners.Detach(served.Record.Address, name);
            _log.Info("Block export {0} was removed after the handoff state was saved: no longer served", name);
        }
        var missing = journal.Values.Where(e => !_exports.ContainsKey(e.Name)).ToArray();
        if (missing.Length > 0) BeginRestore(missing, "the journal (recorded after the handoff state was saved)");
        else _log.Info("The block journal agrees with the handoff state ({0} exports)", _exports.Count);
    }

    private void Restoring()
    {
        Receive<Restored>(r =>
        {
            foreach (var result in r.Results)
            {
                _exports[result.Record.Name] = result.Served;
                if (result.Served.Error is { } error)
                    _log.Error("Block export {0} ({1}) is recorded but not served: {2}", result.Record.Name, result.Record.Source, error);
                else
                    _log.Info("Block export {0} served on {1}", result.Record.Name, result.Served.Record.Address);
            }
            BecomeServing();
        });
        Receive<ListBlockExports>(_ => Sender.Tell(List()));
        Receive<BlockServiceMayServe>(_ => { });
        Receive<BlockJournalRecovered>(_ => _journalRecord is null, r => _journalRecord = r.Record);
        ReceiveJournalReplacement();
        ReceiveAny(_ => Stash.Stash());
    }

    private void BecomeServing()
    {
        _state = "serving";
        Become(Serving);
        Stash.UnstashAll();
        if (_tableFromHandoff && !_reconciled && _journalRecord is { } journal) Reconcile(journal);
    }

    private void Serving()
    {
        Receive<ExportBlockDevice>(OnExport);
        Receive<UnexportBlockDevice>(OnUnexport);
        Receive<ListBlockExports>(_ => Sender.Tell(List()));
        Receive<GetBlockExportRecords>(_ => Sender.Tell(Records()));
        Receive<RestoreBlockExports>(_ => _log.Warning("Handoff exports received after the block service was restored; ignored"));
        Receive<BlockJournalRecovered>(_ => _journalRecord is null, r =>
        {
            _journalRecord = r.Record;
            if (_tableFromHandoff && !_reconciled) Reconcile(r.Record);
        });
        Receive<BlockServiceMayServe>(_ => { });
        ReceiveJournalReplacement();
    }

    /// <summary>A change is under way: listing is answered, other changes wait their turn.</summary>
    private void Changing()
    {
        Receive<Opened>(OnOpened);
        Receive<ExportRecorded>(OnExportRecorded);
        Receive<UnexportRecorded>(OnUnexportRecorded);
        Receive<ListBlockExports>(_ => Sender.Tell(List()));
        Receive<BlockServiceMayServe>(_ => { });
        Receive<BlockJournalRecovered>(_ => _journalRecord is null, r => _journalRecord = r.Record);
        ReceiveJournalReplacement();
        ReceiveAny(_ => Stash.Stash());
    }

    private void Unavailable()
    {
        Receive<ListBlockExports>(_ => Sender.Tell(List()));
        Receive<ExportBlockDevice>(_ => Sender.Tell(BlockServiceResult.Fail(BlockErrorKind.Failed, $"the block service is unavailable: {_unavailable}")));
        Receive<UnexportBlockDevice>(_ => Sender.Tell(BlockServiceResult.Fail(BlockErrorKind.Failed, $"the block service is unavailable: {_unavailable}")));
        Receive<BlockServiceMayServe>(_ => { });
        // Nothing is served and the table is unknown: the handoff state leaves the exports out (default, not
        // empty), so a successor reads the journal itself; a newer build may read what this one cannot.
        Receive<GetBlockExportRecords>(_ => Sender.Tell(new BlockExportRecords(default)));
        Receive<RestoreBlockExports>(r =>
        {
            // The journal cannot be read, but a takeover brought the table: serve it (changes cannot be recorded).
            TakeHandoffTable(r);
            _log.Warning("The block journal is unreadable; serving the {0} exports of the handoff state", r.Exports.Length);
            if (_mayServe) BeginRestore();
            else
            {
                _state = "waiting";
                Become(Waiting);
            }
        });
        Receive<Terminated>(_ => { });
        Receive<BlockJournalRecovered>(_ => { });
    }

    /// <summary>Akka.Persistence stops a journal whose write failed (its requester got the cause): start a fresh
    /// one, which reads what is really on disk. What it recovers is ignored: this actor's table is the truth.</summary>
    private void ReceiveJournalReplacement()
    {
        Receive<Terminated>(t => t.ActorRef.Equals(_journal), _ =>
        {
            // A journal that cannot be read stops after saying so: another one would fail the same way, for ever.
            if (_journalUnreadable is not null) return;
            _log.Warning("The block journal stopped; reading it again");
            StartJournal();
        });
        Receive<Terminated>(_ => { });
        Receive<BlockJournalRecovered>(_ => { });
        Receive<BlockJournalUnreadable>(u =>
        {
            // A takeover's table is served (or about to be) while the journal turns out unreadable: keep serving it
            // and hand it on at the next sendfd, but record and change nothing.
            _journalUnreadable = u.Description;
            _log.Error("The block journal cannot be read ({0}): the exports of the handoff state stay served, changes are refused", u.Description);
        });
    }

    private void BecomeUnavailable(string description)
    {
        _log.Error("The block service cannot read its journal ({0}); it serves no exports", description);
        _unavailable = description;
        _journalUnreadable = description;
        _state = "unavailable";
        Become(Unavailable);
        Stash.UnstashAll();
    }

    // ---- Export ----

    private void OnExport(ExportBlockDevice request)
    {
        if (RefuseUnrecordable()) return;
        if (_exports.ContainsKey(request.Name))
        {
            Sender.Tell(BlockServiceResult.Fail(BlockErrorKind.AlreadyExists, $"an export named '{request.Name}' exists already"));
            return;
        }
        if (request.Source is null || request.Config is null)
        {
            Sender.Tell(BlockServiceResult.Fail(BlockErrorKind.Invalid, "an export needs an image: source and config, or a mountpoint"));
            return;
        }
        var record = new BlockExportRecord(request.Name, request.Source, request.Config, request.Mountpoint, request.Address);
        var replyTo = Sender;
        OpenAsync(record, waitForAddress: false).PipeTo(Self, success: r => new Opened(r, replyTo),
            failure: e => new Opened(new OpenResult(record, new ServedExport(record, null, e.Message), BlockErrorKind.Invalid), replyTo));
        Become(Changing);
    }

    private void OnOpened(Opened opened)
    {
        var served = opened.Result.Served;
        if (served.Error is not null)
        {
            opened.ReplyTo.Tell(BlockServiceResult.Fail(opened.Result.ErrorKind ?? BlockErrorKind.Invalid, served.Error));
            BecomeServing();
            return;
        }
        // Recorded with the address as bound, so a TCP port 0 is the same port after a restart.
        _journal.Ask<BlockRecorded>(new RecordBlockExport(served.Record), Timeout.InfiniteTimeSpan).PipeTo(Self,
            success: _ => new ExportRecorded(served, null, opened.ReplyTo),
            failure: e => new ExportRecorded(served, e, opened.ReplyTo));
    }

    private void OnExportRecorded(ExportRecorded recorded)
    {
        var served = recorded.Served;
        if (recorded.Failure is { } failure)
        {
            // Not recorded, so not served: a restart would not know it.
            _listeners.Detach(served.Record.Address, served.Record.Name);
            recorded.ReplyTo.Tell(JournalFailed(failure));
        }
        else
        {
            _exports[served.Record.Name] = served;
            _log.Info("Block export {0} ({1}, {2} bytes) served on {3}", served.Record.Name, served.Record.Source,
                served.Export!.Device.Size, served.Record.Address);
            recorded.ReplyTo.Tell(new BlockServiceResult(null, "exported", Info(served)));
        }
        BecomeServing();
    }

    // ---- Unexport: recorded first, then done (a failed write leaves it served and recorded) ----

    private void OnUnexport(UnexportBlockDevice request)
    {
        if (RefuseUnrecordable()) return;
        if (!_exports.TryGetValue(request.Name, out var served))
        {
            Sender.Tell(BlockServiceResult.Fail(BlockErrorKind.NotFound, $"no export named '{request.Name}'"));
            return;
        }
        var replyTo = Sender;
        _journal.Ask<BlockRecorded>(new RecordBlockUnexport(request.Name), Timeout.InfiniteTimeSpan).PipeTo(Self,
            success: _ => new UnexportRecorded(served, null, replyTo),
            failure: e => new UnexportRecorded(served, e, replyTo));
        Become(Changing);
    }

    private void OnUnexportRecorded(UnexportRecorded recorded)
    {
        if (recorded.Failure is { } failure)
        {
            recorded.ReplyTo.Tell(JournalFailed(failure));
        }
        else
        {
            _exports.Remove(recorded.Served.Record.Name);
            if (recorded.Served.Export is not null) _listeners.Detach(recorded.Served.Record.Address, recorded.Served.Record.Name);
            _log.Info("Block export {0} removed", recorded.Served.Record.Name);
            recorded.ReplyTo.Tell(new BlockServiceResult(null, "removed"));
        }
        BecomeServing();
    }

    /// <summary>True (and the sender answered) when the journal cannot be read, so no change could be recorded.</summary>
    private bool RefuseUnrecordable()
    {
        if (_journalUnreadable is null) return false;
        Sender.Tell(BlockServiceResult.Fail(BlockErrorKind.Failed,
            $"nothing changed: the block journal cannot be read, so no change can be recorded ({_journalUnreadable})"));
        return true;
    }

    private static BlockServiceResult JournalFailed(Exception failure)
    {
        var cause = failure is AggregateException { InnerException: { } inner } ? inner : failure;
        var full = cause is JournalWriteException && JournalFailures.IsDiskFull(cause);
        return BlockServiceResult.Fail(full ? BlockErrorKind.InsufficientStorage : BlockErrorKind.Failed,
            $"nothing changed: {cause.Message}");
    }

    // ---- The off-actor step: open the image, bind the address ----

    /// <summary>Opens the record's image and serves it on its address. Never throws: a failure is the result's
    /// <see cref="ServedExport.Error"/>. Runs while the actor waits for it (Changing, Restoring), so the listener
    /// set is used by one step at a time.</summary>
    private async Task<OpenResult> OpenAsync(BlockExportRecord record, bool waitForAddress)
    {
        BlockAddressSpace device;
        try
        {
            var caches = _caches;
            device = await Task.Run(() => OpenImage(record, caches));
        }
        catch (BlockServiceException e)
        {
            return new OpenResult(record, new ServedExport(record, null, e.Message), e.Kind);
        }

        var export = new NbdExport(record.Name, Path.GetFileName(record.Source), device);
        var deadline = DateTime.UtcNow + AddressWaitLimit;
        while (true)
        {
            try
            {
                var bound = _listeners.Attach(record.Address, export);
                var served = record with { Address = bound };
                return new OpenResult(served, new ServedExport(served, export, null), null);
            }
            catch (BlockServiceException e) when (waitForAddress && e.Kind == BlockErrorKind.AlreadyExists && DateTime.UtcNow < deadline)
            {
                await Task.Delay(200);
            }
            catch (BlockServiceException e)
            {
                device.Dispose();
                return new OpenResult(record, new ServedExport(record, null, e.Message), e.Kind);
            }
            catch (Exception e) when (e is FormatException or ArgumentException or IOException)
            {
                // A recorded address of an older build that no longer parses, say: not served, device closed.
                device.Dispose();
                return new OpenResult(record, new ServedExport(record, null, $"cannot serve on {record.Address}: {e.Message}"), BlockErrorKind.Invalid);
            }
        }
    }

    private static BlockAddressSpace OpenImage(BlockExportRecord record, Storage.Cache.BlobCacheRegistry caches)
    {
        var what = $"the config of block export '{record.Name}'";
        try
        {
            if (!Path.IsPathFullyQualified(record.Source))
                throw new BlockServiceException(BlockErrorKind.Invalid, $"source: the image path '{record.Source}' must be absolute");
            switch (Interop.InputFile.NotRegular(record.Source, out _))
            {
                case Interop.InputFile.DoesNotExist:
                    throw new BlockServiceException(BlockErrorKind.Invalid, $"source: the image {record.Source} does not exist");
                case { } notRegular:
                    throw new BlockServiceException(BlockErrorKind.Invalid, $"source: the image {record.Source} {notRegular}");
            }
            var config = NydusConfigLoader.Parse(record.Config, what, Environment.GetEnvironmentVariable("IMAGE_PULL_AUTH"));
            return BlockImages.Open(record.Source, config, what, caches);
        }
        catch (Exception e) when (e is ConfigException or RafsException or StorageException or IOException or UnauthorizedAccessException)
        {
            throw new BlockServiceException(BlockErrorKind.Invalid, $"block export '{record.Name}': {e.Message}", e);
        }
    }

    // ---- Listing ----

    private BlockExportList List()
    {
        IEnumerable<BlockExportInfo> entries = _exports.Count > 0 || _state is "serving" or "unavailable"
            ? _exports.Values.Select(Info)
            // Before the restore: what the journal records, not served here (yet).
            : _recovered.Exports.Values.Select(r => new BlockExportInfo(r.Name, r.Source, r.Mountpoint, r.Address, 0, 0, _state, null));
        // A takeover's table is served before the journal is read: the restore is done once both agree.
        string state = _state switch
        {
            // Served from a takeover's table over a journal that cannot be read: served, but changes are refused.
            "serving" when _journalUnreadable is not null => "unrecorded",
            "serving" when _tableFromHandoff && !_reconciled => "restoring",
            _ => _state,
        };
        return new BlockExportList(state, [.. entries]);
    }

    /// <summary>Every recorded export, served or not, with the address as bound.</summary>
    private BlockExportRecords Records() => new([.. _exports.Values.Select(e => e.Record)]);

    private static BlockExportInfo Info(ServedExport served) => new(
        served.Record.Name, served.Record.Source, served.Record.Mountpoint, served.Record.Address,
        served.Export?.Device.Size ?? 0, served.Export?.Connections ?? 0,
        served.Error is null ? "serving" : "failed", served.Error);

    /// <summary>A recorded export and what serves it; <see cref="Export"/> is null when it could not be served.</summary>
    private sealed record ServedExport(BlockExportRecord Record, NbdExport? Export, string? Error);

    private sealed record OpenResult(BlockExportRecord Record, ServedExport Served, BlockErrorKind? ErrorKind);

    private sealed record Restored(List<OpenResult> Results);

    private sealed record Opened(OpenResult Result, IActorRef ReplyTo);

    private sealed record ExportRecorded(ServedExport Served, Exception? Failure, IActorRef ReplyTo);

    private sealed record UnexportRecorded(ServedExport Served, Exception? Failure, IActorRef ReplyTo);
}
