using Nydus.Actors.Config;
using Nydus.Actors.Fuse.FileSystem;
using Nydus.Actors.Fuse.Ops;
using Nydus.Actors.Interop;
using Nydus.Actors.Passthrough;
using Nydus.Actors.Rafs;
using Nydus.Actors.Storage.Backends;
using Nydus.Actors.Storage.Cache;
using Nydus.Actors.Storage.Prefetch;

namespace Nydus.Actors.Daemon.Mounts;

/// <summary>
/// One mountable filesystem with everything it holds open: a RAFS/EROFS image and its blob backend, or a
/// passthrough directory. What the FUSE session serves; disposing it releases the image and the backend.
/// </summary>
public sealed class FilesystemInstance : IDisposable
{
    private readonly IDisposable[] _owned;

    private FilesystemInstance(IFuseFileSystem fileSystem, FsBackendType type, FuseInitOptions initOptions, MountMetrics? metrics, params IDisposable[] owned)
    {
        FileSystem = fileSystem;
        Type = type;
        InitOptions = initOptions;
        Metrics = metrics;
        _owned = owned;
    }

    /// <summary>The background prefetch (whole blobs or listed files), when configured (null otherwise).</summary>
    public IPrefetcher? Prefetcher { get; private init; }

    /// <summary>The counters of the backend and cache behind this instance (null for passthrough).</summary>
    public MountMetrics? Metrics { get; }

    public IFuseFileSystem FileSystem { get; }

    public FsBackendType Type { get; }

    /// <summary>What this filesystem wants negotiated at FUSE INIT.</summary>
    public FuseInitOptions InitOptions { get; }

    /// <summary>The per-file counters its config switches on (RAFS only, as upstream; all off for passthrough).</summary>
    public Vfs.FileAccounting Accounting { get; private init; }

    /// <summary>
    /// Opens a RAFS v5/v6 or EROFS bootstrap with upstream's configuration. Errors name the file and the field:
    /// <see cref="ConfigException"/> for the configuration, <see cref="RafsException"/> for the image.
    /// </summary>
    /// <remarks>Images without explicit uid/gid report the daemon's own, as upstream does.</remarks>
    /// <param name="caches">The daemon's blob caches: a registry backend with a filecache/blobcache reads through one opened here.</param>
    /// <param name="prefetchFiles">
    /// <c>--prefetch-files</c> or the API's <c>prefetch_files</c> (absolute paths; <c>["/"]</c> = everything): with
    /// <c>rafs.prefetch.enable</c> they replace the image's own prefetch table. Null: use the table.
    /// </param>
    public static FilesystemInstance OpenRafs(string bootstrap, ConfigV2 config, string configSource, BlobCacheRegistry caches,
        IReadOnlyList<string>? prefetchFiles = null, ErrorEventLog? events = null)
    {
        // Upstream also demands a file cache for RAFS v6 over FUSE because its reader needs one; ours does not.
        var mount = RafsMountConfig.From(config, isRafsV6: false, configSource);
        if (mount.Overlay is not null)
            throw new ConfigException(ConfigErrorKind.UnsupportedForImage, $"overlay: a writable overlay over RAFS is not supported yet (in {configSource})");

        // rafs.batch_size (legacy amplify_io) is also how far an on-demand miss is amplified in the blob cache.
        int amplify = (int)Math.Min(mount.Rafs.BatchSize, 64 << 20);
        var (backend, devices, ownedBackends) = OpenBackend(mount.Backend, mount.Cache, configSource, amplify, caches);
        var metrics = new MountMetrics(mount.Backend.Type,
            ownedBackends.OfType<RegistryBackend>().FirstOrDefault()?.Metrics,
            (backend as BlobFileCache)?.Metrics,
            mount.Cache.IsFileCache ? mount.Cache.FileCache?.WorkDir : null)
        {
            Credentials = ownedBackends.OfType<RegistryBackend>().FirstOrDefault()?.Credentials,
        };
        try
        {
            var image = RafsImage.Open(bootstrap, new BlobSource(backend, devices), new RafsOpenOptions
            {
                DefaultUid = Libc.GetEffectiveUid(),
                DefaultGid = Libc.GetEffectiveGid(),
                ValidateDigests = config.IsChunkValidationEnabled,
                // rafs.batch_size bounds how much adjacent chunk data one backend read may merge.
                MergeSize = mount.Rafs.BatchSize is > 0 and <= 64 << 20 ? (int)mount.Rafs.BatchSize : 1 << 20,
                // The image reads through the cache it was opened on, which heals what fails validation.
                ChunkReader = backend is BlobFileCache cachedBackend ? new CachedChunkReader(cachedBackend) : Storage.DirectChunkReader.Instance,
            });
            // Disposed first on unmount: the prefetcher stops before the image and the cache it reads through close.
            IPrefetcher? prefetcher = null;
            if (backend is BlobFileCache cache)
            {
                // The image's blobs stay in the cache while it is mounted, whatever the disk limit.
                cache.Pin(image.Blobs.Select(b => b.Id));
                prefetcher = StartPrefetch(mount, image, cache, prefetchFiles);
            }
            IDisposable[] owned = prefetcher is null ? [image, .. ownedBackends] : [prefetcher, image, .. ownedBackends];
            return new FilesystemInstance(new RafsFileSystem(image, events: events), FsBackendType.Rafs, FuseInitOptions.ReadOnlyImage,
                metrics with
                {
                    Prefetcher = prefetcher,
                    CachedBlobs = backend is BlobFileCache ? image.Blobs.Where(b => ReferenceEquals(b.Backend, backend)).Select(b => b.Id).ToArray() : [],
                }, owned)
            {
                Prefetcher = prefetcher,
                Accounting = new Vfs.FileAccounting(mount.Rafs.IostatsFiles, mount.Rafs.AccessPattern, mount.Rafs.LatestReadFiles),
            };
        }
        catch
        {
            foreach (var owned in ownedBackends) owned.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Upstream's prefetch choice (rafs/src/fs.rs): whole blobs when <c>cache.prefetch</c> or <c>rafs.prefetch</c>
    /// is enabled with <c>prefetch_all</c>, or when the list (or the image's table) names the root; otherwise, with
    /// <c>rafs.prefetch.enable</c>, the listed files, or without a list the files of the image's prefetch table.
    /// The enabled <c>cache.prefetch</c> table wins for threads, batch and rate of a whole-blob prefetch.
    /// Choice: with prefetch_all the listed files are not fetched first (upstream orders them ahead of the rest).
    /// </summary>
    private static IPrefetcher? StartPrefetch(RafsMountConfig mount, RafsImage image, BlobFileCache cache,
        IReadOnlyList<string>? prefetchFiles)
    {
        PrefetchConfigV2 blobLevel = mount.Cache.Prefetch, fileLevel = mount.Rafs.Prefetch;
        bool all = (blobLevel.Enable && blobLevel.PrefetchAll) || (fileLevel.Enable && fileLevel.PrefetchAll);
        if (!all && fileLevel.Enable)
        {
            if (prefetchFiles is { Count: > 0 })
            {
                if (!prefetchFiles.Any(FilePrefetcher.IsRoot))
                    return FilePrefetcher.ForPaths(image, cache, prefetchFiles, fileLevel);
                all = true;
            }
            else if (prefetchFiles is null && image.PrefetchTable is { Count: > 0 } table)
            {
                if (!table.Contains(image.RootInode))
                    return FilePrefetcher.ForInodes(image, cache, table, fileLevel);
                all = true;
            }
        }

        if (!all)
            return null;

        PrefetchConfigV2 settings = (blobLevel.Enable ? blobLevel : fileLevel) with { Enable = true, PrefetchAll = true };
        var blobs = new List<PrefetchBlob>(image.Blobs.Count);
        foreach (var blob in image.Blobs)
        {
            // Local device files of plain EROFS images have their own backend: only cached blobs gain from this.
            if (ReferenceEquals(blob.Backend, cache))
                blobs.Add(new PrefetchBlob(blob.Id));
        }

        return blobs.Count == 0 ? null : new BlobPrefetcher(cache, blobs, settings);
    }

    /// <summary>Shares a host directory (upstream's passthroughfs), read-only unless <paramref name="writable"/>.</summary>
    /// <param name="kernelPassthrough">Let the kernel read and write open files' host files itself (FUSE_PASSTHROUGH,
    /// Linux 6.9+; the config's <c>kernel_passthrough</c>, default on).</param>
    public static FilesystemInstance OpenPassthrough(string directory, bool writable, bool kernelPassthrough = true)
    {
        if (!Directory.Exists(directory))
            throw new DirectoryNotFoundException($"shared directory {directory} does not exist");
        var fs = new PassthroughFileSystem(directory, writable, kernelPassthrough: kernelPassthrough);
        var init = writable
            ? FuseInitOptions.WritablePassthrough(kernelPassthrough: kernelPassthrough)
            : FuseInitOptions.ReadOnlyPassthrough(kernelPassthrough);
        return new FilesystemInstance(fs, FsBackendType.PassthroughFs, init, null, fs);
    }

    internal static (IBlobBackend Backend, string[] Devices, IDisposable[] Owned) OpenBackend(BackendConfigV2 backend, CacheConfigV2 cache, string configSource,
        int amplifyBytes, BlobCacheRegistry caches)
    {
        switch (backend.Type)
        {
            case BackendConfigV2.LocalFsType:
                var localfs = backend.LocalFs!;
                var settings = new LocalFsBackendSettings
                {
                    Dir = localfs.Dir.Length > 0 ? localfs.Dir : null,
                    BlobFile = localfs.BlobFile.Length > 0 ? localfs.BlobFile : null,
                    AltDirs = localfs.AltDirs,
                };
                // A plain EROFS image made with `mkfs.erofs --blobdev F` names no blob: its extra device is blob_file.
                string[] devices = localfs.BlobFile.Length > 0 ? [localfs.BlobFile] : [];
                // Local blobs are read in place: copying them into a cache on the same disk gains nothing (and
                // upstream's --localfs-dir would put the cache files among the blobs themselves).
                if (cache.IsFileCache)
                    Serilog.Log.Information("Blobs of the localfs backend are read in place; the {CacheType} cache serves remote backends", cache.Type);
                var local = new LocalFsBackend(settings);
                return (local, devices, [local]);

            case BackendConfigV2.RegistryType:
                var registry = new RegistryBackend(RegistryBackendSettings.FromConfig(backend.Registry!));
                if (BlobCacheSettings.FromConfig(cache) is not { } cacheSettings) return (registry, [], [registry]);
                Directory.CreateDirectory(cacheSettings.WorkDir);
                var cached = caches.Open(cacheSettings with
                {
                    ReadAmplifyBytes = amplifyBytes,
                    ReadAheadWindows = caches.ReadAheadWindows,
                }, registry);
                // The cache first (it flushes its maps), then the HTTP client under it.
                return (cached, [], [cached, registry]);

            default:
                throw new ConfigException(ConfigErrorKind.UnknownBackendType,
                    $"backend.type: the '{backend.Type}' backend is not supported yet by this build (in {configSource})");
        }
    }

    public void Dispose()
    {
        foreach (var resource in _owned) resource.Dispose();
    }
}
