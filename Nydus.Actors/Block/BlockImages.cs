using Nydus.Actors.Config;
using Nydus.Actors.Daemon.Mounts;
using Nydus.Actors.Interop;
using Nydus.Actors.Rafs;
using Nydus.Actors.Storage.Cache;

namespace Nydus.Actors.Block;

/// <summary>Opens an image as a <see cref="BlockAddressSpace"/> with upstream's configuration (backend and cache).</summary>
public static class BlockImages
{
    /// <summary>
    /// Opens <paramref name="bootstrap"/> over the backend and cache of <paramref name="config"/>, exactly as a
    /// FUSE mount of it would read its blobs (same blob cache files, amplification and digest checks).
    /// Errors: <see cref="ConfigException"/> for the configuration, <see cref="RafsException"/> for the image.
    /// </summary>
    /// <param name="caches">The daemon's blob caches, where a cached backend's cache is opened.</param>
    /// <param name="deviceBlobIds">Blob ids of a plain EROFS image's untagged devices, read through the backend
    /// (<see cref="BlobSource.DeviceBlobIds"/>); a localfs <c>blob_file</c> is read as the first device's file anyway.</param>
    public static BlockAddressSpace Open(string bootstrap, ConfigV2 config, string configSource, BlobCacheRegistry caches,
        IReadOnlyList<string>? deviceBlobIds = null)
    {
        var mount = RafsMountConfig.From(config, isRafsV6: false, configSource);
        int amplify = (int)Math.Min(mount.Rafs.BatchSize, 64 << 20);
        var (backend, devices, owned) = FilesystemInstance.OpenBackend(mount.Backend, mount.Cache, configSource, amplify, caches);
        try
        {
            var options = new RafsOpenOptions
            {
                DefaultUid = Libc.GetEffectiveUid(),
                DefaultGid = Libc.GetEffectiveGid(),
                ValidateDigests = config.IsChunkValidationEnabled,
                MergeSize = mount.Rafs.BatchSize is > 0 and <= 64 << 20 ? (int)mount.Rafs.BatchSize : 1 << 20,
                // As a mount's image: chunks read through the cache they were opened on, which heals what fails validation.
                ChunkReader = backend is BlobFileCache cached ? new CachedChunkReader(cached) : Storage.DirectChunkReader.Instance,
            };
            var space = BlockAddressSpace.Open(bootstrap, new BlobSource(backend, devices, deviceBlobIds), options, owned);
            if (backend is BlobFileCache cache)
            {
                // Served blobs stay in the cache whatever its disk limit, as a mounted image's do.
                cache.Pin(space.Extents.Where(e => e.Kind == BlockExtentKind.Data).Select(e => e.Name));
            }

            return space;
        }
        catch
        {
            foreach (var resource in owned) resource.Dispose();
            throw;
        }
    }

    /// <summary>The command line's form: <c>--config FILE</c> or <c>--localfs-dir DIR</c> (upstream's pair), for the
    /// one-image commands (export, virtio-fs): the image gets a blob cache registry of its own, closed with it.</summary>
    public static BlockAddressSpace OpenFromCommandLine(string bootstrap, string? configFile, string? localfsDir)
    {
        var caches = new BlobCacheRegistry();
        try
        {
            return Open(bootstrap, ConfigFromCommandLine(configFile, localfsDir, out string source), source, caches).Own(caches);
        }
        catch
        {
            caches.Dispose();
            throw;
        }
    }

    private static ConfigV2 ConfigFromCommandLine(string? configFile, string? localfsDir, out string source)
    {
        string text = configFile is not null
            ? NydusConfigLoader.ReadConfigText(configFile)
            : NydusConfigLoader.CreateLocalFsDirConfigText(Path.GetFullPath(localfsDir
                ?? throw new ConfigException(ConfigErrorKind.MissingForMount, "--config or --localfs-dir is required with --bootstrap")));
        source = configFile ?? "--localfs-dir";
        return NydusConfigLoader.Parse(text, source);
    }
}
