using System.Collections.Immutable;

namespace Nydus.Actors.Daemon.Persistence;

/// <summary>Marks everything <see cref="DaemonJournalSerializer"/> writes to the journal and the snapshot store.
/// Persisted records are never reshaped: a new shape is a new record with a new manifest.</summary>
public interface IDaemonJournalPersisted;

// ---- Events ----

/// <summary>A daemon process started on this journal.</summary>
public sealed record DaemonStarted(string? DaemonId, DateTimeOffset At, string Version) : IDaemonJournalPersisted;

/// <summary>A filesystem instance was mounted (or remounted: the record for the mountpoint is replaced).</summary>
public sealed record FilesystemMounted(MountRecord Mount) : IDaemonJournalPersisted;

public sealed record FilesystemUnmounted(string Mountpoint) : IDaemonJournalPersisted;

/// <summary>The mount command of one instance, enough to mount it again in another process: what upstream's upgrade
/// manager keeps per mountpoint (cmd + vfs index).</summary>
public sealed record MountRecord(
    string Mountpoint,
    string FsType,
    string Source,
    string Config,
    ImmutableArray<string> PrefetchFiles,
    int VfsIndex);

/// <summary>A bootstrap entry was added to the blob cache manager (PUT /api/v2/blobs): its key (domain/blob) and the
/// entry as received. The entry's config may hold registry secrets: the record is sealed.</summary>
public sealed record BlobEntryAdded(string Key, string Entry) : IDaemonJournalPersisted;

/// <summary>A removal from the blob cache manager, with upstream's rules: a domain (empty blob id) or one key.</summary>
public sealed record BlobEntryRemoved(string DomainId, string BlobId) : IDaemonJournalPersisted;

// ---- State (also the snapshot) ----

/// <summary>The durable state of a daemon, rebuilt by applying events in order.</summary>
public sealed record DaemonRecord(
    string? DaemonId,
    DateTimeOffset? FirstStartedAt,
    int StartCount,
    ImmutableSortedDictionary<string, MountRecord> Mounts) : IDaemonJournalPersisted
{
    // Declared before Empty, which is built with it (static fields initialize in order).
    private static readonly ImmutableSortedDictionary<string, string> NoBlobs =
        ImmutableSortedDictionary<string, string>.Empty.WithComparers(StringComparer.Ordinal);

    public static readonly DaemonRecord Empty = new(null, null, 0,
        ImmutableSortedDictionary<string, MountRecord>.Empty.WithComparers(StringComparer.Ordinal));

    /// <summary>The blob cache manager's bootstrap entries, key (domain/blob) to entry text. Absent in the snapshots
    /// of older builds (read as none); an added member rather than a new record, since every old record reads.</summary>
    public ImmutableSortedDictionary<string, string> Blobs { get; init; } = NoBlobs;

    public DaemonRecord Apply(IDaemonJournalPersisted evt) => evt switch
    {
        DaemonStarted s => this with
        {
            DaemonId = s.DaemonId ?? DaemonId,
            FirstStartedAt = FirstStartedAt ?? s.At,
            StartCount = StartCount + 1,
        },
        FilesystemMounted m => this with { Mounts = Mounts.SetItem(m.Mount.Mountpoint, m.Mount) },
        FilesystemUnmounted u => this with { Mounts = Mounts.Remove(u.Mountpoint) },
        BlobEntryAdded b => this with { Blobs = (Blobs ?? NoBlobs).SetItem(b.Key, b.Entry) },
        BlobEntryRemoved r => this with { Blobs = RemoveBlobs(Blobs ?? NoBlobs, r) },
        _ => this,
    };

    private static ImmutableSortedDictionary<string, string> RemoveBlobs(ImmutableSortedDictionary<string, string> blobs, BlobEntryRemoved r)
    {
        if (r.BlobId.Length == 0 && r.DomainId.Length > 0)
        {
            var prefix = r.DomainId + Nydus.Actors.Config.BlobCacheEntry.KeySeparator;
            return blobs.RemoveRange(blobs.Keys.Where(k => k.StartsWith(prefix, StringComparison.Ordinal)));
        }
        return blobs.Remove(Nydus.Actors.Config.BlobCacheEntry.Key(r.DomainId, r.BlobId));
    }
}

// ---- Commands and replies ----

public sealed record GetDaemonRecord
{
    public static readonly GetDaemonRecord Instance = new();
}

public sealed record RecordMount(MountRecord Mount);

/// <summary>Record this start now (for a journal created with the start deferred: a successor that waited for a
/// takeover, while its predecessor still wrote the same journal).</summary>
public sealed record RecordDaemonStart
{
    public static readonly RecordDaemonStart Instance = new();
}

public sealed record RecordUnmount(string Mountpoint);

/// <summary>A barrier: answered with <see cref="JournalFlushed"/> once every write asked for before it is on disk
/// (the store handles no command while a write is in flight). The daemon asks it before it stops, so a process that
/// exits right after its daemon stopped loses nothing.</summary>
public sealed record FlushJournal
{
    public static readonly FlushJournal Instance = new();
}

public sealed record JournalFlushed
{
    public static readonly JournalFlushed Instance = new();
}

/// <summary>The event was persisted; <see cref="Record"/> is the state after it.</summary>
public sealed record Recorded(DaemonRecord Record);
