namespace Nydus.Actors.Config;

/// <summary>
/// The sections a RAFS mount uses, checked for presence and for the image at hand: what upstream's
/// <c>Rafs::new</c> (<c>rafs/src/fs.rs</c>) and the overlay factory demand beyond <see cref="NydusConfigLoader"/>'s
/// validation. A config may be valid yet unusable for a mount (e.g. a version-only document).
/// </summary>
public sealed record RafsMountConfig(BackendConfigV2 Backend, CacheConfigV2 Cache, RafsConfigV2 Rafs, OverlayConfig? Overlay)
{
    /// <summary>
    /// Checks <paramref name="config"/> for mounting an image whose format is known (<paramref name="isRafsV6"/>
    /// after reading its superblock): backend, cache and rafs sections present; RAFS v6 needs a
    /// <c>blobcache</c>/<c>filecache</c> cache (chunk info lives in the cache file) and <c>rafs.validate</c> off;
    /// an overlay needs both directories.
    /// </summary>
    public static RafsMountConfig From(ConfigV2 config, bool isRafsV6, string sourceName)
    {
        ArgumentNullException.ThrowIfNull(config);

        var backend = config.Backend ?? throw Missing("backend", sourceName);
        var cache = config.Cache ?? throw Missing("cache", sourceName);
        var rafs = config.Rafs ?? throw Missing("rafs", sourceName);

        if (isRafsV6 && !cache.IsFileCache)
        {
            throw new ConfigException(
                ConfigErrorKind.UnsupportedForImage,
                $"cache.type: RAFS v6 needs a local blobcache or filecache, found '{cache.Type}' (in {sourceName})");
        }

        if (isRafsV6 && rafs.Validate)
        {
            throw new ConfigException(
                ConfigErrorKind.UnsupportedForImage,
                $"rafs.validate: RAFS v6 does not support integrity validation, set it to false (in {sourceName})");
        }

        if (config.Overlay is { } overlay && (overlay.UpperDir.Length == 0 || overlay.WorkDir.Length == 0))
        {
            throw new ConfigException(
                ConfigErrorKind.MissingForMount,
                $"overlay: upper_dir and work_dir must both be set (in {sourceName})");
        }

        return new RafsMountConfig(backend, cache, rafs, config.Overlay);
    }

    private static ConfigException Missing(string section, string sourceName) =>
        new(ConfigErrorKind.MissingForMount, $"{section}: a RAFS mount needs this section (in {sourceName})");
}
