using System.Collections.Immutable;
using Nydus.Actors.Config;
using Nydus.Actors.Daemon.Persistence;
using Nydus.Actors.Rafs;
using Nydus.Actors.Storage;

namespace Nydus.Actors.Daemon.Mounts;

/// <summary>An instance opened from a mount command, with what the API lists for it.</summary>
public sealed record OpenedInstance(FilesystemInstance Instance, MountedBackend Backend);

/// <summary>
/// Turns a mount command (from the API, the command line or the journal) into an open filesystem instance, and
/// classifies what can go wrong so the API can tell the caller's mistakes (4xx) from the daemon's (5xx).
/// </summary>
public static class MountCommands
{
    /// <summary>
    /// Opens the filesystem a command describes. RAFS: <c>source</c> is the bootstrap, <c>config</c> upstream's
    /// configuration text. Passthrough: <c>source</c> is the directory; the config may be empty, or a JSON object
    /// whose <c>"writable": true</c> shares it writable (upstream ignores the config of passthrough mounts).
    /// </summary>
    /// <param name="caches">The daemon's blob caches, where a RAFS instance opens its cache.</param>
    /// <param name="configSource">Names the config in error messages (a file path); default "the config of &lt;mountpoint&gt;".</param>
    /// <param name="events">Where the instance records read errors (the daemon's log).</param>
    /// <param name="servedMountpoint">The kernel mountpoint of the FUSE connection the instance will be served on (null
    /// when there is none, e.g. virtio-fs): a passthrough source around it is refused.</param>
    public static OpenedInstance Open(FsBackendMountCmd command, Storage.Cache.BlobCacheRegistry caches, string? configSource = null, ErrorEventLog? events = null,
        string? servedMountpoint = null)
    {
        configSource ??= $"the config of {command.Mountpoint}";
        switch (command.FsType)
        {
            case FsBackendType.Rafs:
                var bootstrap = command.Source;
                if (bootstrap.Length == 0 || !Path.IsPathFullyQualified(bootstrap))
                    throw new ConfigException(ConfigErrorKind.MissingForMount, $"source: the bootstrap path '{bootstrap}' must be absolute");
                // Looked at before it is opened: a FIFO would block the mount queue, /dev/zero would be read forever.
                switch (Interop.InputFile.NotRegular(bootstrap, out _))
                {
                    case Interop.InputFile.DoesNotExist:
                        throw new FileNotFoundException($"bootstrap {bootstrap} does not exist", bootstrap);
                    case { } what:
                        throw new ConfigException(ConfigErrorKind.MissingForMount, $"source: the bootstrap {bootstrap} {what}");
                }
                var config = NydusConfigLoader.Parse(command.Config, configSource, Environment.GetEnvironmentVariable("IMAGE_PULL_AUTH"));
                var rafs = FilesystemInstance.OpenRafs(bootstrap, config, configSource, caches, command.PrefetchFiles, events);
                return new OpenedInstance(rafs, new MountedBackend(FsBackendType.Rafs.ToDisplayString(), command.Mountpoint,
                    DateTimeOffset.UtcNow, ConfigJson.SerializeWithoutSecrets(config), (rafs.FileSystem as RafsFileSystem)?.Image.SuperMeta));

            case FsBackendType.PassthroughFs:
                if (command.Source.Length == 0 || !Path.IsPathFullyQualified(command.Source))
                    throw new ConfigException(ConfigErrorKind.MissingForMount, $"source: the shared directory '{command.Source}' must be absolute");
                RefuseSourceAroundServedMount(command.Source, servedMountpoint);
                var passthrough = FilesystemInstance.OpenPassthrough(command.Source, IsWritablePassthrough(command.Config),
                    PassthroughOption(command.Config, "kernel_passthrough", fallback: true));
                return new OpenedInstance(passthrough, new MountedBackend(FsBackendType.PassthroughFs.ToDisplayString(),
                    command.Mountpoint, DateTimeOffset.UtcNow, null));

            default:
                throw new ConfigException(ConfigErrorKind.InvalidFsType, $"fs_type: '{command.FsType}' cannot be mounted");
        }
    }

    /// <summary>
    /// Refuses a shared directory that holds the daemon's own kernel mountpoint (the mount would show inside itself)
    /// or lies under it (it would serve itself). A walk of either recurses through the daemon: every directory read
    /// of the inner copy is a read of this same FUSE connection, nested once more per level, until every FUSE worker
    /// waits in one and nothing is served any more. Symbolic links are resolved on both sides; the mountpoint itself
    /// is never looked at (a stat of a FUSE mount waits on its server), only its parent. A bind mount that aliases
    /// the mount under another path is not seen here: <c>PassthroughFileSystem</c> refuses to cross into its own
    /// connection's device at lookup for that case.
    /// </summary>
    internal static void RefuseSourceAroundServedMount(string source, string? servedMountpoint)
    {
        if (string.IsNullOrEmpty(servedMountpoint)) return;
        string mount = Path.TrimEndingDirectorySeparator(Path.GetFullPath(servedMountpoint));
        string lexical = Path.TrimEndingDirectorySeparator(Path.GetFullPath(source));
        // Under the mount as written: refused before resolving, which would send requests to this daemon.
        if (IsSameOrUnder(lexical, mount)) throw Around(source, servedMountpoint, "lies under");

        string mountParent = Path.GetDirectoryName(mount) ?? "/";
        string resolvedMount = mount == "/" ? "/" : Path.Combine(Interop.Libc.RealPath(mountParent) ?? mountParent, Path.GetFileName(mount));
        string resolvedSource = Interop.Libc.RealPath(lexical) ?? lexical;
        if (IsSameOrUnder(resolvedSource, resolvedMount)) throw Around(source, servedMountpoint, "lies under");
        if (IsSameOrUnder(resolvedMount, resolvedSource)) throw Around(source, servedMountpoint, "contains");

        static bool IsSameOrUnder(string path, string directory) =>
            path == directory || directory == "/" || path.StartsWith(directory + "/", StringComparison.Ordinal);

        static ConfigException Around(string source, string mountpoint, string relation) => new(ConfigErrorKind.MissingForMount,
            $"source: the shared directory {source} {relation} this daemon's own mountpoint {mountpoint}: the mount would serve " +
            "itself and a walk of it would never end; share a directory beside the mountpoint");
    }

    /// <summary>True when the failure is the request's fault (bad config, missing or corrupt image): a 4xx.</summary>
    public static bool IsCallersFault(Exception e) =>
        e is ConfigException or RafsException or FileNotFoundException or DirectoryNotFoundException or UnauthorizedAccessException
        // At open, a blob the config names that is not there (or not a file) is the request's mistake, not the daemon's.
        or StorageException { Kind: StorageErrorKind.BlobNotFound };

    /// <summary>The failures opening an instance may end in; anything else is a bug and escalates.</summary>
    public static bool IsExpected(Exception e) =>
        IsCallersFault(e) || e is StorageException or IOException or InvalidOperationException;

    public static MountRecord ToRecord(FsBackendMountCmd command, int vfsIndex) => new(
        command.Mountpoint, command.FsType.ToDisplayString(), command.Source, command.Config,
        command.PrefetchFiles is null ? ImmutableArray<string>.Empty : [.. command.PrefetchFiles], vfsIndex);

    public static FsBackendMountCmd FromRecord(MountRecord record) => new()
    {
        FsType = FsBackendTypes.TryParseDisplayString(record.FsType, out var type) ? type : FsBackendTypes.Parse(record.FsType),
        Source = record.Source,
        Config = record.Config,
        Mountpoint = record.Mountpoint,
        PrefetchFiles = record.PrefetchFiles.IsDefaultOrEmpty ? null : record.PrefetchFiles,
    };

    /// <summary>Whether two records describe the same mount (the arrays compared by content).</summary>
    public static bool SameRecord(MountRecord a, MountRecord b) =>
        a.Mountpoint == b.Mountpoint && a.FsType == b.FsType && a.Source == b.Source && a.Config == b.Config
        && a.VfsIndex == b.VfsIndex && a.PrefetchFiles.AsSpan().SequenceEqual(b.PrefetchFiles.AsSpan());

    /// <summary>A record as the handoff state carries it to a successor.</summary>
    public static Upgrade.HandoffInstance ToHandoff(MountRecord record) => new(record.Mountpoint, record.FsType, record.Source,
        record.Config, record.PrefetchFiles.IsDefaultOrEmpty ? null : [.. record.PrefetchFiles], record.VfsIndex);

    public static MountRecord FromHandoff(Upgrade.HandoffInstance instance) => new(instance.Mountpoint, instance.FsType,
        instance.Source, instance.Config, instance.PrefetchFiles is null ? ImmutableArray<string>.Empty : [.. instance.PrefetchFiles],
        instance.VfsIndex);

    private static bool IsWritablePassthrough(string config) => PassthroughOption(config, "writable", fallback: false);

    /// <summary>A boolean of a passthrough mount's config object (<c>writable</c>, <c>kernel_passthrough</c>).</summary>
    private static bool PassthroughOption(string config, string name, bool fallback)
    {
        if (string.IsNullOrWhiteSpace(config)) return fallback;
        try
        {
            using var doc = System.Text.Json.JsonDocument.Parse(config);
            if (doc.RootElement.ValueKind != System.Text.Json.JsonValueKind.Object || !doc.RootElement.TryGetProperty(name, out var value))
                return fallback;
            return value.ValueKind switch
            {
                System.Text.Json.JsonValueKind.True => true,
                System.Text.Json.JsonValueKind.False => false,
                _ => throw new ConfigException(ConfigErrorKind.Malformed, $"config of a passthrough_fs mount: {name} must be true or false"),
            };
        }
        catch (System.Text.Json.JsonException e)
        {
            throw new ConfigException(ConfigErrorKind.Malformed, $"config of a passthrough_fs mount: {e.Message}", e);
        }
    }
}
