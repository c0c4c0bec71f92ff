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

// ---- State (also the snapshot) ----

/// <summary>The durable state of a daemon, rebuilt by applying events in order.</summary>
public sealed record DaemonRecord(
    string? DaemonId,
    DateTimeOffset? FirstStartedAt,
    int StartCount,
    ImmutableSortedDictionary<string, MountRecord> Mounts) : IDaemonJournalPersisted
{
    public static readonly DaemonRecord Empty = new(null, null, 0,
        ImmutableSortedDictionary<string, MountRecord>.Empty.WithComparers(StringComparer.Ordinal));

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
        _ => this,
    };
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
