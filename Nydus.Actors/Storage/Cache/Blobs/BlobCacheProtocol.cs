using System.Collections.Immutable;
using Nydus.Actors.Config;

namespace Nydus.Actors.Storage.Cache.Blobs;

// ---- To the blob cache actor (from the API, through the daemon actor) ----

/// <summary>Add a bootstrap entry and its data blobs. Answered with <see cref="BlobCacheResult"/>.</summary>
/// <param name="Record">False for entries of a singleton's <c>--config</c>: upstream does not record those (they are
/// added again from the file at every start).</param>
public sealed record AddBlobEntry(BlobCacheEntry Entry, bool Record = true);

/// <summary>Remove a domain (<paramref name="BlobId"/> empty) or one entry. Answered with <see cref="BlobCacheResult"/>.</summary>
public sealed record RemoveBlobEntry(string DomainId, string BlobId);

/// <summary>Upstream's fscache cull (<c>DELETE ?blob_id=B</c> alone): delete the blob's cache files the kernel does
/// not use. Served by an fscache singleton's service; answered with <see cref="BlobCacheResult"/>.</summary>
public sealed record CullBlob(string BlobId);

/// <summary>List every entry, or one domain's (<paramref name="DomainId"/> not null). Answered with <see cref="BlobCacheListing"/>.</summary>
public sealed record ListBlobEntries(string? DomainId = null);

public sealed record BlobCacheListing(IReadOnlyList<BlobCacheItem> Items);

/// <summary>The bootstrap entries as added, once the manager has read them back (answered after a restore in
/// progress): what a sendfd puts in the handoff state. Answered with <see cref="BlobEntries"/>.</summary>
public sealed record GetBlobEntries
{
    public static readonly GetBlobEntries Instance = new();
}

/// <summary>A successor's entries from its predecessor's handoff state (entry texts as added).</summary>
public sealed record RestoreBlobEntries(ImmutableArray<string> Entries);

/// <summary>The journal is this process's now (a successor reached RUNNING): changes may be recorded.</summary>
public sealed record BlobJournalIsOurs
{
    public static readonly BlobJournalIsOurs Instance = new();
}

// ---- From the blob cache actor ----

/// <summary>The answer to <see cref="GetBlobEntries"/>: the bootstrap entries as added, for the handoff state.</summary>
public sealed record BlobEntries(ImmutableArray<string> Entries);

// ---- Between the blob cache actor and the daemon journal (the journal implements these) ----

/// <summary>Record an added bootstrap entry (its text may hold registry secrets: the journal seals it).
/// Answered with <see cref="BlobJournalRecorded"/> or a <c>Status.Failure</c>.</summary>
public sealed record RecordBlobEntryAdded(string Key, string Entry);

/// <summary>Record a removal with upstream's rules (a domain, or one key). Answered like <see cref="RecordBlobEntryAdded"/>.</summary>
public sealed record RecordBlobEntryRemoved(string DomainId, string BlobId);

/// <summary>The recorded bootstrap entries, key to entry text: answered with <see cref="RecordedBlobEntries"/>
/// once the journal is read.</summary>
public sealed record GetRecordedBlobEntries
{
    public static readonly GetRecordedBlobEntries Instance = new();
}

public sealed record RecordedBlobEntries(ImmutableSortedDictionary<string, string> Entries);

/// <summary>The journal took the change.</summary>
public sealed record BlobJournalRecorded
{
    public static readonly BlobJournalRecorded Instance = new();
}
