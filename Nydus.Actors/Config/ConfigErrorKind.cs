namespace Nydus.Actors.Config;

/// <summary>What was wrong with a configuration input; see <see cref="ConfigException"/>.</summary>
public enum ConfigErrorKind
{
    /// <summary>The file could not be read (missing, permission, not a file).</summary>
    Unreadable,

    /// <summary>The file is larger than <see cref="NydusConfigLoader.MaxFileSize"/>.</summary>
    TooLarge,

    /// <summary>Neither JSON V2, TOML V2 nor legacy JSON: bad syntax, a wrong value type or a missing required key.</summary>
    Malformed,

    /// <summary><c>version</c> is not 2.</summary>
    InvalidVersion,

    /// <summary><c>backend.type</c> names no known backend.</summary>
    UnknownBackendType,

    /// <summary>The section of the selected backend is absent or lacks a mandatory value.</summary>
    InvalidBackend,

    /// <summary><c>cache.type</c> names no known cache.</summary>
    UnknownCacheType,

    /// <summary>The selected cache lacks its section or its work_dir.</summary>
    InvalidCache,

    /// <summary><c>rafs.mode</c> or <c>rafs.batch_size</c> out of range.</summary>
    InvalidRafs,

    /// <summary>An enabled prefetch table has threads or batch_size out of range.</summary>
    InvalidPrefetch,

    /// <summary>A section a RAFS mount needs (backend, cache, rafs) is absent, or the overlay paths are empty.</summary>
    MissingForMount,

    /// <summary>The configuration is valid but cannot serve this image, e.g. RAFS v6 without a file cache.</summary>
    UnsupportedForImage,

    /// <summary>A prefetch file list (API array or <c>--prefetch-files</c> file) has a relative entry.</summary>
    InvalidPrefetchList,

    /// <summary>An <c>fs_type</c> other than rafs or the passthrough spellings.</summary>
    InvalidFsType,

    /// <summary>A virtual mountpoint that is not an absolute, normalized path.</summary>
    InvalidMountpoint,

    /// <summary>A field this build cannot serve, set to a value that would need it: refused by name, never ignored.</summary>
    Unsupported,
}
