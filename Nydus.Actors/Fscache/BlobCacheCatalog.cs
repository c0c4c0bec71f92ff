using System.Collections.Concurrent;
using Akka.Actor;
using Nydus.Actors.Block;
using Nydus.Actors.Config;
using Nydus.Actors.Storage.Cache.Blobs;

namespace Nydus.Actors.Fscache;

/// <summary>
/// Resolves cookies through the blob cache manager (<see cref="Storage.Cache.BlobCacheActor"/>, the entries of
/// <c>/api/v2/blobs</c> and the singleton's <c>--config</c>): a bootstrap id names its bootstrap file, a data blob id
/// the blob in the image of the bootstrap that brought it, read with that entry's backend and cache configuration
/// (a filecache/blobcache entry reads through the local blob cache, an fscache entry straight from the backend: the
/// kernel's cache file is the cache). Asked from the fscache worker threads, on OPEN only; images are opened once
/// per bootstrap and kept until the service stops. Their local blob caches are opened in the daemon's
/// <paramref name="caches"/>, shared with the disk limit and any other user of the same work dir.
/// </summary>
public sealed class BlobCacheCatalog(ICanTell blobCache, TimeSpan askTimeout, Storage.Cache.BlobCacheRegistry caches) : IFscacheCatalog, IDisposable
{
    private readonly ConcurrentDictionary<string, Lazy<BlockAddressSpace>> _images = new(StringComparer.Ordinal);

    public FscacheObjectSource? Resolve(string domainId, string blobId)
    {
        var listing = blobCache.Ask<BlobCacheListing>(new ListBlobEntries(domainId), askTimeout).GetAwaiter().GetResult();
        var item = listing.Items.FirstOrDefault(i => i.DomainId == domainId && i.BlobId == blobId);
        if (item is null) return null;
        if (item.Type == BlobCacheEntry.BootstrapType)
        {
            return new BootstrapObjectSource(item.MetadataPath ?? item.Entry.MetadataPath);
        }

        // A data blob: the image of the bootstrap entry that brought it (its canonical path from the listing).
        string bootstrapKey = item.Entry.Key();
        var bootstrap = listing.Items.FirstOrDefault(i => i.Key == bootstrapKey);
        string path = bootstrap?.MetadataPath ?? item.Entry.MetadataPath;
        var lazy = _images.GetOrAdd(bootstrapKey, _ => new Lazy<BlockAddressSpace>(
            // Entries need no rafs section (they serve no filesystem here); the image reader wants one: defaults.
            () => BlockImages.Open(path, item.Entry.Config with { Rafs = item.Entry.Config.Rafs ?? new RafsConfigV2() },
                $"blob entry {bootstrapKey}", caches, item.Entry.DeviceBlobIds)));
        BlockAddressSpace image;
        try
        {
            image = lazy.Value;
        }
        catch
        {
            // Not cached: a later OPEN (the backend back, the file fixed) tries again.
            _images.TryRemove(new KeyValuePair<string, Lazy<BlockAddressSpace>>(bootstrapKey, lazy));
            throw;
        }

        // Data extents follow the device table as the bootstrap's data blob ids do: by position, since a device read
        // from a local file (a localfs blob_file) is named by its path in the image.
        var data = image.Extents.Where(e => e.Kind == BlockExtentKind.Data).ToList();
        int slot = bootstrap is null ? -1 : bootstrap.DataBlobs.IndexOf(blobId);
        var extent = slot >= 0 && slot < data.Count ? data[slot] : data.FirstOrDefault(e => e.Name == blobId);
        return extent is null ? null : new DataBlobObjectSource(image, extent, blobId, PrefetchPiece(item.Entry.Config.Cache?.Prefetch));
    }

    /// <summary>Upstream's fscache prefetch batch: the configured batch_size rounded up to a power of two, at least 256 KiB.</summary>
    private static int PrefetchPiece(PrefetchConfigV2? prefetch)
    {
        if (prefetch is not { Enable: true }) return 0;
        ulong batch = Math.Clamp(prefetch.BatchSize, 1, PrefetchConfigV2.MaxBatchSize);
        return (int)Math.Max(256 << 10, System.Numerics.BitOperations.RoundUpToPowerOf2(batch));
    }

    public void Dispose()
    {
        foreach (var lazy in _images.Values)
            if (lazy.IsValueCreated) lazy.Value.Dispose();
        _images.Clear();
    }
}
