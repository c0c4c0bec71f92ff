using System.Collections.Immutable;

namespace Nydus.Actors.Daemon.Persistence;

// The block service's durable state: the NBD exports it serves. Its own persistence id ("<daemon's>-block") in the
// daemon's journal, so the mount table's records (DaemonRecord) keep their shape. Same serializer, same sealing.

/// <summary>One NBD export, enough to serve it again in another process.</summary>
/// <param name="Name">The export's name, as NBD clients ask for it.</param>
/// <param name="Source">The image (bootstrap) file.</param>
/// <param name="Config">The configuration text (backend and cache of the blobs); may hold registry secrets.</param>
/// <param name="Mountpoint">The virtual mountpoint the export was made from (source and config copied from it), or null.</param>
/// <param name="Address">Where it is served: an absolute Unix socket path, or "IP:PORT" for TCP (the bound port).</param>
public sealed record BlockExportRecord(string Name, string Source, string Config, string? Mountpoint, string Address)
{
    /// <summary>A Unix socket address is an absolute path; anything else is TCP.</summary>
    public bool IsUnixSocket => Address.StartsWith('/');
}

/// <summary>An export was added (the block service serves it).</summary>
public sealed record BlockExportAdded(BlockExportRecord Export) : IDaemonJournalPersisted;

/// <summary>An export was removed.</summary>
public sealed record BlockExportRemoved(string Name) : IDaemonJournalPersisted;

/// <summary>The block service's state (also its snapshot).</summary>
public sealed record BlockServiceRecord(ImmutableSortedDictionary<string, BlockExportRecord> Exports) : IDaemonJournalPersisted
{
    public static readonly BlockServiceRecord Empty = new(ImmutableSortedDictionary<string, BlockExportRecord>.Empty.WithComparers(StringComparer.Ordinal));

    public BlockServiceRecord Apply(IDaemonJournalPersisted evt) => evt switch
    {
        BlockExportAdded a => this with { Exports = Exports.SetItem(a.Export.Name, a.Export) },
        BlockExportRemoved r => this with { Exports = Exports.Remove(r.Name) },
        _ => this,
    };
}

/// <summary>To the block journal: record an export (answered <see cref="BlockRecorded"/> or a Status.Failure).</summary>
public sealed record RecordBlockExport(BlockExportRecord Export);

/// <summary>To the block journal: record an export's removal.</summary>
public sealed record RecordBlockUnexport(string Name);

/// <summary>The block journal recorded the change.</summary>
public sealed record BlockRecorded(BlockServiceRecord Record);

/// <summary>From the block journal to its parent: recovery finished with this state.</summary>
public sealed record BlockJournalRecovered(BlockServiceRecord Record);

/// <summary>From the block journal to its parent: the journal could not be replayed.</summary>
public sealed record BlockJournalUnreadable(string Description);
