using System.Collections.Immutable;
using Akka.Actor;
using Akka.Event;
using Nydus.Actors.Config;
using Nydus.Actors.Storage.Cache.Blobs;

namespace Nydus.Actors.Storage.Cache;

/// <summary>Disk budget of every blob cache work dir and how often it is checked (HOCON <c>nydus.blob-cache</c>).</summary>
/// <param name="DiskLimitBytes">Bytes each cache may hold; 0 means unlimited (no eviction).</param>
/// <param name="CheckInterval">How often the caches are measured and trimmed.</param>
public sealed record BlobCacheLimits(long DiskLimitBytes, TimeSpan CheckInterval)
{
    public static readonly BlobCacheLimits Unlimited = new(0, TimeSpan.FromSeconds(60));
}

/// <summary>What the blob cache manager needs from the daemon: where to record changes and how to read a bootstrap.</summary>
/// <param name="Journal">The daemon journal: takes <see cref="RecordBlobEntryAdded"/>/<see cref="RecordBlobEntryRemoved"/>
/// and answers <see cref="GetRecordedBlobEntries"/>.</param>
/// <param name="Bootstraps">Reads a bootstrap's blob table (the RAFS layer's, handed down by the host).</param>
/// <param name="JournalDeferred">A successor waiting for a takeover: its predecessor still writes the journal, so
/// changes are refused (503) until <see cref="BlobJournalIsOurs"/>.</param>
/// <param name="IsDiskFull">Whether a journal failure means a full disk (507 rather than 500).</param>
public sealed record BlobCacheManagerSetup(IActorRef Journal, IBootstrapBlobTable Bootstraps, bool JournalDeferred = false,
    Func<Exception, bool>? IsDiskFull = null)
{
    /// <summary>How long a change waits for the journal to take it.</summary>
    public TimeSpan RecordTimeout { get; init; } = TimeSpan.FromSeconds(60);
}

/// <summary>
/// Owns the blob cache manager (<see cref="BlobCacheManager"/>: domains, bootstraps, shared data blobs, served by
/// <c>/api/v2/blobs</c>), the disk limit of the local blob caches, and the daemon's <see cref="BlobCacheRegistry"/>
/// (made by the host and handed to whatever opens a cache; this actor disposes it when it stops, closing the caches
/// still open). The manager's bootstrap entries are recorded in
/// the daemon journal before they count (a change the journal refuses is undone and answered with the cause), read
/// back at start, and carried to a successor by the handoff state. Reads never pass through this actor: the data path
/// reads cache files directly; this actor only measures the caches every <see cref="BlobCacheLimits.CheckInterval"/>
/// and, over <see cref="BlobCacheLimits.DiskLimitBytes"/>, evicts whole blobs least recently read first, never one that
/// a mounted image (<see cref="BlobFileCache.Pin"/>) or a domain of the manager uses, nor one being read.
/// </summary>
/// <remarks>
/// States: <c>Restoring</c> (reading the journal; requests wait), <c>Serving</c>, and <c>Changing</c> (a bootstrap
/// being read or a change being recorded: the next request waits, so changes apply in the order they came).
/// </remarks>
public sealed class BlobCacheActor : ReceiveActor, IWithTimers, IWithUnboundedStash
{
    /// <summary>Check the caches now (also sent by the timer). Replies with <see cref="Trimmed"/>.</summary>
    public sealed record Trim
    {
        public static readonly Trim Instance = new();
    }

    /// <summary>Bytes freed by one check over all caches.</summary>
    public sealed record Trimmed(long FreedBytes);

    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly BlobCacheLimits _limits;
    private readonly BlobCacheRegistry _caches;
    private readonly BlobCacheManagerSetup? _setup;
    private readonly BlobCacheManager _manager = new();
    private bool _journalDeferred;
    // One cache object per work dir the manager's entries name: it measures the dir (files other runs left included)
    // and pins the blobs domains use, so the check below evicts only blobs no domain and no mount uses.
    private readonly Dictionary<string, BlobFileCache> _managedDirs = new(StringComparer.Ordinal);

    public ITimerScheduler Timers { get; set; } = null!;
    public IStash Stash { get; set; } = null!;

    /// <param name="limits">The budget.</param>
    /// <param name="caches">The daemon's caches: checked against the budget, disposed when this actor stops.</param>
    /// <param name="setup">The blob cache manager's dependencies; without them <c>/api/v2/blobs</c> answers 501.</param>
    public BlobCacheActor(BlobCacheLimits limits, BlobCacheRegistry caches, BlobCacheManagerSetup? setup = null)
    {
        _limits = limits;
        _caches = caches;
        _setup = setup;
        _journalDeferred = setup?.JournalDeferred ?? false;
        if (setup is null) Unmanaged();
        else Restoring();
    }

    public static Props Props(BlobCacheLimits limits, BlobCacheRegistry caches, BlobCacheManagerSetup? setup = null) =>
        Akka.Actor.Props.Create(() => new BlobCacheActor(limits, caches, setup));

    protected override void PreStart()
    {
        if (_limits.DiskLimitBytes > 0 && _limits.CheckInterval > TimeSpan.Zero)
        {
            Timers.StartPeriodicTimer("trim", Trim.Instance, _limits.CheckInterval);
            _log.Info("Blob cache disk limit {0} bytes per work dir, checked every {1}", _limits.DiskLimitBytes, _limits.CheckInterval);
        }
        if (_setup is not null)
        {
            // The guard answers once the journal is read; a journal that cannot be read stops the daemon anyway.
            _setup.Journal.Ask<RecordedBlobEntries>(GetRecordedBlobEntries.Instance, Timeout.InfiniteTimeSpan)
                .PipeTo(Self, success: r => new JournalRead(r.Entries.Values.ToImmutableArray(), null),
                    failure: e => new JournalRead([], e.Message));
        }
    }

    /// <summary>A restart (a failure in this actor) keeps the registry: the mounts' caches go on serving. The watch
    /// caches are this instance's and closed; the next one opens them again with its first change.</summary>
    protected override void PreRestart(Exception reason, object message) => CloseManagedDirs();

    protected override void PostStop()
    {
        CloseManagedDirs();
        _caches.Dispose();
    }

    private void CloseManagedDirs()
    {
        foreach (var cache in _managedDirs.Values) cache.Dispose();
        _managedDirs.Clear();
    }

    private void Unmanaged()
    {
        ReceiveTrim();
        Receive<AddBlobEntry>(_ => Sender.Tell(NoManager()));
        Receive<RemoveBlobEntry>(_ => Sender.Tell(NoManager()));
        Receive<ListBlobEntries>(_ => Sender.Tell(new BlobCacheListing([])));
        Receive<GetBlobEntries>(_ => Sender.Tell(new BlobEntries([])));
    }

    private static BlobCacheResult NoManager() =>
        BlobCacheResult.Fail(BlobCacheErrorKind.NotReady, "this daemon has no blob cache manager");

    private void Restoring()
    {
        ReceiveTrim();
        Receive<JournalRead>(r =>
        {
            if (r.Error is not null) _log.Error("The blob cache manager could not read its entries from the journal: {0}", r.Error);
            ReadBootstraps(r.Entries, "journal");
        });
        Receive<BootstrapsRead>(r =>
        {
            AddRestored(r);
            Become(Serving);
            Stash.UnstashAll();
        });
        ReceiveAny(_ => Stash.Stash());
    }

    private void Serving()
    {
        ReceiveTrim();
        Receive<ListBlobEntries>(l => Sender.Tell(new BlobCacheListing(_manager.List(l.DomainId))));
        Receive<GetBlobEntries>(_ => Sender.Tell(new BlobEntries([.. _manager.Bootstraps().Select(e => e.Text)])));
        Receive<AddBlobEntry>(a =>
        {
            if (a.Record && Refused(out var why))
            {
                Sender.Tell(why);
                return;
            }
            var replyTo = Sender;
            var bootstraps = _setup!.Bootstraps;
            Task.Run(() => ReadBootstrap(bootstraps, a.Entry))
                .PipeTo(Self, success: read => new EntryRead(a, read, replyTo));
            BecomeStacked(Changing);
        });
        Receive<RemoveBlobEntry>(r =>
        {
            if (Refused(out var why))
            {
                Sender.Tell(why);
                return;
            }
            // Checked first, recorded next, applied last: a removal the journal refuses changes nothing.
            if (!(r.BlobId.Length == 0 && r.DomainId.Length > 0) && _manager.Get(r.DomainId, r.BlobId) is null)
            {
                Sender.Tell(_manager.Remove(r.DomainId, r.BlobId));
                return;
            }
            if (r.BlobId.Length == 0 && r.DomainId.Length > 0 && !_manager.HasDomain(r.DomainId))
            {
                Sender.Tell(BlobCacheResult.Fail(BlobCacheErrorKind.NotFound, $"no domain '{r.DomainId}' in the blob cache manager"));
                return;
            }
            RecordThen(new RecordBlobEntryRemoved(r.DomainId, r.BlobId), Sender, () => _manager.Remove(r.DomainId, r.BlobId), undo: null);
            BecomeStacked(Changing);
        });
        Receive<RestoreBlobEntries>(r =>
        {
            // A successor's takeover: the predecessor's entries replace what this process read from the journal at
            // start (the journal may have changed since). Nothing is written: the predecessor recorded them.
            _manager.Clear();
            ReadBootstraps(r.Entries, "handoff");
            BecomeStacked(Changing);
        });
        Receive<BlobJournalIsOurs>(_ =>
        {
            // A successor may have taken its entries from the handoff onto a journal that lacks them (a lost work
            // dir): now that the journal is ours, write what it does not record, and drop what it records in excess.
            _journalDeferred = false;
            _setup!.Journal.Ask<RecordedBlobEntries>(GetRecordedBlobEntries.Instance, _setup.RecordTimeout)
                .PipeTo(Self, success: r => new JournalKeys([.. r.Entries.Keys], null), failure: e => new JournalKeys([], e.Message));
        });
        Receive<JournalKeys>(r =>
        {
            if (r.Error is not null)
            {
                _log.Warning("The blob entries could not be compared with the journal: {0}", r.Error);
                return;
            }
            var recorded = r.Keys.ToHashSet(StringComparer.Ordinal);
            var held = _manager.Bootstraps().ToDictionary(e => e.Key(), StringComparer.Ordinal);
            var writes = new List<object>();
            foreach (var (key, entry) in held.Where(h => !recorded.Contains(h.Key)))
                writes.Add(new RecordBlobEntryAdded(key, entry.Text));
            foreach (var key in recorded.Where(k => !held.ContainsKey(k)))
            {
                var slash = key.IndexOf(BlobCacheEntry.KeySeparator);
                writes.Add(slash < 0 ? new RecordBlobEntryRemoved("", key) : new RecordBlobEntryRemoved(key[..slash], key[(slash + 1)..]));
            }
            if (writes.Count == 0) return;
            // Reported once every write is acknowledged (a stop right after a "written" line must not lose them).
            var journal = _setup!.Journal;
            var timeout = _setup.RecordTimeout;
            Task.WhenAll(writes.Select(w => journal.Ask<BlobJournalRecorded>(w, timeout)))
                .PipeTo(Self, success: _ => new CaughtUp(writes.Count, null), failure: e => new CaughtUp(writes.Count, e.Message));
        });
        Receive<CaughtUp>(c =>
        {
            if (c.Error is null) _log.Info("Blob entries written to the journal now ours: {0} change(s)", c.Changes);
            else _log.Warning("Blob entries could not all be written to the journal now ours: {0}", c.Error);
        });
    }

    /// <summary>A change in progress: its steps come back as messages; everything else waits.</summary>
    private void Changing()
    {
        ReceiveTrim();
        Receive<EntryRead>(OnEntryRead);
        Receive<BootstrapsRead>(r =>
        {
            AddRestored(r);
            Done();
        });
        Receive<ChangeRecorded>(c =>
        {
            if (c.Error is null)
            {
                // The parent learns first: a sendfd asked right after the answer must carry the change.
                var result = c.Apply();
                Changed();
                c.ReplyTo.Tell(result);
            }
            else
            {
                c.Undo?.Invoke();
                c.ReplyTo.Tell(BlobCacheResult.Fail(
                    _setup!.IsDiskFull?.Invoke(c.Error) == true ? BlobCacheErrorKind.InsufficientStorage : BlobCacheErrorKind.NotRecorded,
                    $"the change was not recorded, nothing changed: {c.Error.Message}"));
            }
            Done();
        });
        ReceiveAny(_ => Stash.Stash());
    }

    private void Done()
    {
        UnbecomeStacked();
        Stash.UnstashAll();
    }

    private void OnEntryRead(EntryRead r)
    {
        if (r.Read.Error is { } error)
        {
            r.ReplyTo.Tell(BlobCacheResult.Fail(BlobCacheErrorKind.Invalid, error));
            Done();
            return;
        }
        var entry = r.Add.Entry;
        var added = _manager.Add(entry, r.Read.Path!, r.Read.DataBlobIds);
        if (!added.Succeeded || added.Unchanged || !r.Add.Record)
        {
            if (added.Succeeded && !added.Unchanged) Changed();
            r.ReplyTo.Tell(added);
            Done();
            return;
        }
        // Applied first (Add checks everything), recorded next; a refused record takes it back out.
        RecordThen(new RecordBlobEntryAdded(entry.Key(), entry.Text), r.ReplyTo, () => added,
            undo: () => _manager.Remove(entry.DomainId, entry.BlobId));
    }

    private void RecordThen(object record, IActorRef replyTo, Func<BlobCacheResult> apply, Action? undo)
    {
        _setup!.Journal.Ask<BlobJournalRecorded>(record, _setup.RecordTimeout)
            .PipeTo(Self, success: _ => new ChangeRecorded(replyTo, apply, undo, null),
                failure: e => new ChangeRecorded(replyTo, apply, undo, e is AggregateException { InnerException: { } inner } ? inner : e));
    }

    private bool Refused(out BlobCacheResult why)
    {
        why = _journalDeferred
            ? BlobCacheResult.Fail(BlobCacheErrorKind.NotReady, "this daemon is taking over from another one: blob entries change once it runs")
            : null!;
        return _journalDeferred;
    }

    /// <summary>After every change: the pins of the disk limit. (The handoff state asks for the entries with
    /// <see cref="GetBlobEntries"/> when a sendfd needs them; nothing is pushed to the parent.)</summary>
    private void Changed() => UpdatePins();

    private void UpdatePins()
    {
        var inUse = _manager.BlobsInUse();
        foreach (var dir in inUse.Select(u => u.WorkDir).Distinct())
        {
            if (_managedDirs.ContainsKey(dir)) continue;
            try
            {
                _managedDirs[dir] = _caches.Open(new BlobCacheSettings { WorkDir = dir }, NoBackend.Instance);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or StorageException or ObjectDisposedException)
            {
                _log.Warning("The disk limit cannot watch cache work dir {0}: {1}", dir, e.Message);
            }
        }
        // Dirs no entry names any more stay watched: their blobs are exactly the ones no domain uses.
        foreach (var (dir, cache) in _managedDirs)
            cache.SetPins(inUse.Where(u => u.WorkDir == dir).Select(u => u.BlobId));
    }

    private void ReadBootstraps(ImmutableArray<string> texts, string from)
    {
        var bootstraps = _setup!.Bootstraps;
        Task.Run(() => new BootstrapsRead(from, [.. texts.Select(text =>
            {
                try
                {
                    var entry = BlobCacheEntry.Parse(text, $"blob entry from the {from}");
                    return (entry, ReadBootstrap(bootstraps, entry), (string?)null);
                }
                catch (ConfigException e)
                {
                    return ((BlobCacheEntry?)null, (BootstrapRead?)null, e.Message);
                }
            })])).PipeTo(Self);
    }

    private void AddRestored(BootstrapsRead r)
    {
        int added = 0;
        foreach (var (entry, read, parseError) in r.Entries)
        {
            var error = parseError ?? read?.Error;
            var result = error is null ? _manager.Add(entry!, read!.Path!, read.DataBlobIds) : null;
            if (result is { Succeeded: true }) added++;
            else _log.Warning("A blob entry from the {0} was not added again: {1}", r.From, error ?? result?.Message);
        }
        if (r.Entries.Length > 0) _log.Info("Blob cache manager: {0} of {1} bootstrap entries from the {2} added again", added, r.Entries.Length, r.From);
        Changed();
    }

    /// <summary>Upstream's <c>get_meta_info</c> and bootstrap load: the path and work dir checks, then the blob table.</summary>
    private static BootstrapRead ReadBootstrap(IBootstrapBlobTable bootstraps, BlobCacheEntry entry)
    {
        var key = entry.Key();
        if (entry.MetadataPath.Length == 0) return BootstrapRead.Fail($"blob {key}: config.metadata_path is empty");
        // Looked at before anything opens it (a FIFO would block the opener), following links as upstream's canonicalize.
        if (Interop.InputFile.NotRegular(entry.MetadataPath, out _) is { } notFile)
            return BootstrapRead.Fail($"blob {key}: config.metadata_path {entry.MetadataPath} {notFile}");
        string path;
        try
        {
            path = Path.GetFullPath(entry.MetadataPath);
            var target = new FileInfo(path).ResolveLinkTarget(returnFinalTarget: true);
            if (target is not null) path = target.FullName;
        }
        catch (Exception e) when (e is IOException or ArgumentException or UnauthorizedAccessException)
        {
            return BootstrapRead.Fail($"blob {key}: config.metadata_path {entry.MetadataPath} is invalid: {e.Message}");
        }
        if (entry.WorkDir is not { } workDir || !Directory.Exists(workDir))
            return BootstrapRead.Fail($"blob {key}: the cache work_dir {entry.WorkDir ?? "(none)"} is not a directory");
        try
        {
            var table = bootstraps.Read(path);
            if (table.IsRafsV5) return BootstrapRead.Fail($"blob {key}: {path} is a RAFS v5 bootstrap; the blob cache manager takes RAFS v6 only (as upstream)");
            return table.PlainDeviceTags is { } tags ? PlainDevices(key, path, tags, entry.DeviceBlobIds) : new BootstrapRead(path, table.DataBlobIds, null);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            return BootstrapRead.Fail($"blob {key}: bootstrap {path} cannot be read: {e.Message}");
        }
    }

    /// <summary>A plain EROFS image's data blobs: its tagged slots by tag, its untagged ones by the entry's <c>devices</c>, one for one.</summary>
    private static BootstrapRead PlainDevices(string key, string path, IReadOnlyList<string> tags, IReadOnlyList<string> named)
    {
        int untagged = tags.Count(t => t.Length == 0);
        if (untagged != named.Count)
        {
            return BootstrapRead.Fail(named.Count == 0
                ? $"blob {key}: {path} is a plain EROFS image with {untagged} untagged device(s) (mkfs.erofs --blobdev): name their blobs in the entry's 'devices' (the ids the mount's device= options give)"
                : $"blob {key}: 'devices' names {named.Count} blob(s), but {path} has {untagged} untagged device(s)");
        }
        int next = 0;
        return new BootstrapRead(path, [.. tags.Select(t => t.Length > 0 ? t : named[next++])], null);
    }

    private void ReceiveTrim() => Receive<Trim>(_ => Sender.Tell(new Trimmed(TrimAll())));

    // The watch caches of managed dirs are in the registry too: one pass trims mounted and managed dirs alike.
    private long TrimAll() => _limits.DiskLimitBytes <= 0 ? 0 : _caches.TrimToLimit(_limits.DiskLimitBytes);

    /// <summary>The recorded entry texts at start.</summary>
    private sealed record JournalRead(ImmutableArray<string> Entries, string? Error);

    /// <summary>A successor's catch-up writes, all acknowledged (or the first failure).</summary>
    private sealed record CaughtUp(int Changes, string? Error);

    /// <summary>The recorded keys, once a successor's journal is its own.</summary>
    private sealed record JournalKeys(ImmutableArray<string> Keys, string? Error);

    private sealed record BootstrapRead(string? Path, IReadOnlyList<string> DataBlobIds, string? Error)
    {
        public static BootstrapRead Fail(string error) => new(null, [], error);
    }

    private sealed record EntryRead(AddBlobEntry Add, BootstrapRead Read, IActorRef ReplyTo);

    private sealed record BootstrapsRead(string From, ImmutableArray<(BlobCacheEntry? Entry, BootstrapRead? Read, string? ParseError)> Entries);

    private sealed record ChangeRecorded(IActorRef ReplyTo, Func<BlobCacheResult> Apply, Action? Undo, Exception? Error);

    /// <summary>The backend of the cache objects that only measure and pin a managed work dir: they never fetch.</summary>
    private sealed class NoBackend : Backends.IBlobBackend
    {
        public static readonly NoBackend Instance = new();

        public long GetBlobSize(string blobId) => throw Refused(blobId);

        public void Read(string blobId, long offset, Span<byte> destination) => throw Refused(blobId);

        private static StorageException Refused(string blobId) =>
            new(StorageErrorKind.Unsupported, $"blob {blobId}: the blob cache manager's disk accounting does not fetch");

        public void Dispose()
        {
        }
    }
}
