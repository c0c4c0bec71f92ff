using System.Collections.Immutable;
using Nydus.Actors.Config;

namespace Nydus.Actors.Storage.Cache.Blobs;

/// <summary>
/// Upstream's <c>BlobCacheMgr</c> (<c>service/src/blob_cache.rs</c>): domains of images, each image a bootstrap
/// (meta blob) entry with the data blobs of its blob table. Keys are <c>domain/blob</c> (<see cref="BlobCacheEntry.Key(string,string)"/>);
/// a data blob that several bootstraps of one domain use is one entry with a reference count, and is dropped when
/// the last bootstrap using it goes. Domains are isolated (their keys differ), but their data blobs may name the same
/// cache file: <see cref="BlobsInUse"/> is what the disk limit must not evict.
/// </summary>
/// <remarks>
/// Plain state with no I/O and no locking: <see cref="BlobCacheActor"/> owns the only instance and changes it one
/// message at a time. Reading the bootstrap (its blob table) is the caller's, so that this layer never imports RAFS.
/// </remarks>
public sealed class BlobCacheManager
{
    private readonly Dictionary<string, MetaBlob> _metas = new(StringComparer.Ordinal);
    private readonly Dictionary<string, DataBlob> _data = new(StringComparer.Ordinal);

    /// <summary>A bootstrap entry: the entry as added and the keys of the data blobs it holds a reference to.</summary>
    private sealed record MetaBlob(BlobCacheEntry Entry, string Path, ImmutableArray<string> DataKeys);

    /// <summary>A data blob of a domain: its id, the config of the bootstrap that first brought it, its references.</summary>
    private sealed class DataBlob(string domainId, string blobId, BlobCacheEntry source)
    {
        public string DomainId { get; } = domainId;
        public string BlobId { get; } = blobId;
        public BlobCacheEntry Source { get; } = source;
        public int References { get; set; } = 1;
    }

    public int Count => _metas.Count + _data.Count;

    /// <summary>
    /// Adds a bootstrap entry whose blob table lists <paramref name="dataBlobIds"/> (upstream's <c>add_meta_object</c>):
    /// the bootstrap key must be new; each data blob is added to the domain or gains a reference.
    /// </summary>
    /// <param name="bootstrapPath">The bootstrap file, canonical.</param>
    public BlobCacheResult Add(BlobCacheEntry entry, string bootstrapPath, IReadOnlyList<string> dataBlobIds)
    {
        if (entry.Type != BlobCacheEntry.BootstrapType)
            return BlobCacheResult.Fail(BlobCacheErrorKind.Invalid,
                $"blob {entry.Key()}: only '{BlobCacheEntry.BootstrapType}' entries can be added; data blobs come from a bootstrap's blob table");
        var key = entry.Key();
        if (_metas.TryGetValue(key, out var existing))
        {
            // A client retrying the same PUT (a restarted snapshotter re-binding) gets what it asked for; another
            // config under the same key would silently change what the domain's blobs are read with.
            return SameEntry(existing.Entry, entry)
                ? new BlobCacheResult(null, $"bootstrap {key} is already added with this config") { Unchanged = true }
                : BlobCacheResult.Fail(BlobCacheErrorKind.AlreadyExists,
                    $"bootstrap {key} is already added with another config (remove it first to change its config)");
        }
        if (_data.ContainsKey(key))
            return BlobCacheResult.Fail(BlobCacheErrorKind.AlreadyExists, $"{key} is already a data blob of domain '{entry.DomainId}'");
        // Upstream's data entries carry no ids that could clash with a bootstrap's own: check first so nothing is undone.
        foreach (var id in dataBlobIds)
        {
            if (id == entry.BlobId)
                return BlobCacheResult.Fail(BlobCacheErrorKind.Invalid, $"bootstrap {key} lists itself ({id}) as a data blob");
            if (_metas.ContainsKey(BlobCacheEntry.Key(entry.DomainId, id)))
                return BlobCacheResult.Fail(BlobCacheErrorKind.AlreadyExists,
                    $"data blob {id} of {key} has the id of a bootstrap already added to domain '{entry.DomainId}'");
        }

        var keys = ImmutableArray.CreateBuilder<string>();
        foreach (var id in dataBlobIds.Distinct(StringComparer.Ordinal))
        {
            var dataKey = BlobCacheEntry.Key(entry.DomainId, id);
            if (_data.TryGetValue(dataKey, out var shared)) shared.References++;
            else _data[dataKey] = new DataBlob(entry.DomainId, id, entry);
            keys.Add(dataKey);
        }
        _metas[key] = new MetaBlob(entry, bootstrapPath, keys.ToImmutable());
        return BlobCacheResult.Ok($"added bootstrap {key} with {keys.Count} data blobs");
    }

    /// <summary>
    /// Upstream's <c>remove</c>: a domain without a blob id drops every entry of the domain (never fails, whatever
    /// the references); otherwise the key must exist: a bootstrap gives back its data blobs' references (each
    /// dropped at zero), a data blob loses one reference.
    /// </summary>
    public BlobCacheResult Remove(string domainId, string blobId)
    {
        if (blobId.Length == 0 && domainId.Length > 0)
        {
            var prefix = domainId + BlobCacheEntry.KeySeparator;
            int before = Count;
            foreach (var key in _metas.Keys.Where(k => k.StartsWith(prefix, StringComparison.Ordinal)).ToList()) _metas.Remove(key);
            foreach (var key in _data.Keys.Where(k => k.StartsWith(prefix, StringComparison.Ordinal)).ToList()) _data.Remove(key);
            return BlobCacheResult.Ok($"removed domain '{domainId}' ({before - Count} entries)");
        }

        var wanted = BlobCacheEntry.Key(domainId, blobId);
        if (_metas.Remove(wanted, out var meta))
        {
            foreach (var dataKey in meta.DataKeys) Release(dataKey);
            return BlobCacheResult.Ok($"removed bootstrap {wanted}");
        }
        if (_data.ContainsKey(wanted))
        {
            Release(wanted);
            return BlobCacheResult.Ok($"released data blob {wanted}");
        }
        return BlobCacheResult.Fail(BlobCacheErrorKind.NotFound,
            domainId.Length > 0 && !HasDomain(domainId)
                ? $"no domain '{domainId}' in the blob cache manager"
                : $"no blob {wanted} in the blob cache manager");
    }

    /// <summary>Forgets every entry (a successor replacing what it read with its predecessor's handoff).</summary>
    public void Clear()
    {
        _metas.Clear();
        _data.Clear();
    }

    private static bool SameEntry(BlobCacheEntry a, BlobCacheEntry b) =>
        System.Text.Json.Nodes.JsonNode.DeepEquals(System.Text.Json.Nodes.JsonNode.Parse(a.Text), System.Text.Json.Nodes.JsonNode.Parse(b.Text));

    private void Release(string dataKey)
    {
        if (_data.TryGetValue(dataKey, out var blob) && --blob.References <= 0) _data.Remove(dataKey);
    }

    public bool HasDomain(string domainId)
    {
        var prefix = domainId + BlobCacheEntry.KeySeparator;
        return domainId.Length == 0
            ? _metas.Values.Any(m => m.Entry.DomainId.Length == 0) || _data.Values.Any(d => d.DomainId.Length == 0)
            : _metas.Keys.Concat(_data.Keys).Any(k => k.StartsWith(prefix, StringComparison.Ordinal));
    }

    /// <summary>Every entry, or a domain's, sorted by key: bootstraps as added, data blobs with their references.</summary>
    public IReadOnlyList<BlobCacheItem> List(string? domainId = null)
    {
        var items = new List<BlobCacheItem>();
        foreach (var (key, meta) in _metas)
        {
            if (domainId is null || meta.Entry.DomainId == domainId)
                items.Add(new BlobCacheItem(key, BlobCacheEntry.BootstrapType, meta.Entry.DomainId, meta.Entry.BlobId, meta.Entry, 1, meta.Path,
                    [.. meta.DataKeys.Select(k => _data.TryGetValue(k, out var d) ? d.BlobId : k)]));
        }
        foreach (var (key, data) in _data)
        {
            if (domainId is null || data.DomainId == domainId)
                items.Add(new BlobCacheItem(key, BlobCacheEntry.DataBlobType, data.DomainId, data.BlobId, data.Source, data.References, null, []));
        }
        items.Sort((a, b) => string.CompareOrdinal(a.Key, b.Key));
        return items;
    }

    /// <summary>One entry by domain and blob id, or null.</summary>
    public BlobCacheItem? Get(string domainId, string blobId)
    {
        var key = BlobCacheEntry.Key(domainId, blobId);
        return List(domainId).FirstOrDefault(i => i.Key == key);
    }

    /// <summary>The bootstrap entries as added: what the journal and a handoff carry to re-add them elsewhere.</summary>
    public IReadOnlyList<BlobCacheEntry> Bootstraps() =>
        [.. _metas.OrderBy(m => m.Key, StringComparer.Ordinal).Select(m => m.Value.Entry)];

    /// <summary>(cache work dir, blob id) of every data blob some domain holds: never evicted by the disk limit.</summary>
    public IReadOnlySet<(string WorkDir, string BlobId)> BlobsInUse()
    {
        var used = new HashSet<(string, string)>();
        foreach (var meta in _metas.Values)
        {
            if (meta.Entry.WorkDir is not { } dir) continue;
            var full = Path.GetFullPath(dir);
            foreach (var key in meta.DataKeys)
                if (_data.TryGetValue(key, out var d)) used.Add((full, d.BlobId));
        }
        return used;
    }
}

/// <summary>What a listing shows of one entry.</summary>
/// <param name="Entry">The bootstrap entry (for a data blob: the one that first brought it, whose config it uses).</param>
/// <param name="References">How many bootstraps of the domain use a data blob (1 for a bootstrap).</param>
/// <param name="DataBlobs">A bootstrap's data blob ids, in blob-table order.</param>
public sealed record BlobCacheItem(
    string Key,
    string Type,
    string DomainId,
    string BlobId,
    BlobCacheEntry Entry,
    int References,
    string? MetadataPath,
    ImmutableArray<string> DataBlobs);

public enum BlobCacheErrorKind
{
    /// <summary>The entry itself is wrong (type, ids, config, bootstrap).</summary>
    Invalid,
    /// <summary>The bootstrap key is taken.</summary>
    AlreadyExists,
    /// <summary>No such domain or blob.</summary>
    NotFound,
    /// <summary>The change could not be recorded in the journal (nothing changed).</summary>
    NotRecorded,
    /// <summary>Not now: a successor before it runs, or the journal not yet read.</summary>
    NotReady,
    /// <summary>The daemon's disk is full: not recorded, nothing changed.</summary>
    InsufficientStorage,
    /// <summary>A cull of a blob the kernel holds an object open on.</summary>
    InUse,
    /// <summary>Not something this daemon does (a cull without fscache).</summary>
    Unsupported,
    /// <summary>The cachefiles device refused a command.</summary>
    Failed,
}

/// <summary>The answer to a change of the blob cache manager.</summary>
public sealed record BlobCacheResult(BlobCacheErrorKind? Error, string Message)
{
    public bool Succeeded => Error is null;

    /// <summary>A success that changed nothing (the same entry added again): nothing to record.</summary>
    public bool Unchanged { get; init; }
    public static BlobCacheResult Ok(string message) => new(null, message);
    public static BlobCacheResult Fail(BlobCacheErrorKind kind, string message) => new(kind, message);
}
