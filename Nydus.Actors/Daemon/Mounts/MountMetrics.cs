using System.Collections.Concurrent;
using Nydus.Actors.Config;
using Nydus.Actors.Storage.Backends;
using Nydus.Actors.Storage.Cache;
using Nydus.Actors.Storage.Prefetch;

namespace Nydus.Actors.Daemon.Mounts;

/// <summary>The counters of one mounted instance, read on demand by the metrics API.</summary>
/// <param name="BackendType">upstream's backend type name ("registry", "localfs").</param>
/// <param name="Backend">Remote backend counters, when the backend keeps them.</param>
/// <param name="Cache">Blob cache counters, when the mount has a cache.</param>
/// <param name="CacheDir">Where the cache keeps its files.</param>
public sealed record MountMetrics(string BackendType, BackendMetrics? Backend, BlobCacheMetrics? Cache, string? CacheDir)
{
    /// <summary>The background prefetch of this instance, when one runs.</summary>
    public IPrefetcher? Prefetcher { get; init; }

    /// <summary>Blobs of the image kept in the blob cache (upstream's cache entries; empty without a cache).</summary>
    public IReadOnlyList<string> CachedBlobs { get; init; } = [];

    /// <summary>The registry backend's renewable credentials (registry backends only), for <c>PUT /api/v1/config</c>.</summary>
    public RegistryCredentials? Credentials { get; init; }
}

/// <summary>
/// The daemon's table of the metrics of mounted instances, keyed by virtual mountpoint, as upstream keeps its
/// metrics (utils/src/metrics.rs): the API reads an instance by id, or the only one when no id is given. One per
/// daemon, built by the host and handed to the API, the daemon actor and the FUSE setup (no process-wide instance).
/// </summary>
public sealed class MountMetricsRegistry
{
    /// <summary>The daemon's recent failures (<c>GET /api/v1/daemon/events</c>): the instances opened for this table
    /// record their read errors here.</summary>
    public ErrorEventLog Events { get; init; } = new();

    private readonly ConcurrentDictionary<string, MountMetrics> _byMountpoint = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, Vfs.FsIoStats> _fsByMountpoint = new(StringComparer.Ordinal);

    /// <summary>The FUSE workers' in-flight requests; null without a FUSE service (a singleton).</summary>
    public Fuse.Session.FuseInflight? Inflight { get => Volatile.Read(ref _inflight); set => Volatile.Write(ref _inflight, value); }

    private Fuse.Session.FuseInflight? _inflight;

    /// <summary>The FUSE session's request dispatcher (its counters: requests, and those resent after a failover);
    /// null without a FUSE session, and in a successor until its takeover built one.</summary>
    public Fuse.Ops.FuseDispatcher? Dispatcher { get => Volatile.Read(ref _dispatcher); set => Volatile.Write(ref _dispatcher, value); }

    private Fuse.Ops.FuseDispatcher? _dispatcher;

    /// <summary>Runtime values set through <c>PUT /api/v1/config</c>, per virtual mountpoint.</summary>
    public RuntimeConfigStore RuntimeConfig { get; } = new();

    /// <summary>Registers an instance; credentials renewed for its mountpoint before it mounted apply to it too (upstream
    /// reads them from its global map at every request).</summary>
    public void Register(string mountpoint, MountMetrics metrics)
    {
        lock (RuntimeConfig.Lock)
        {
            _byMountpoint[mountpoint] = metrics;
            if (metrics.Credentials is { } credentials
                && RuntimeConfig.Get(mountpoint, RuntimeConfigStore.RegistryAuthKey) is { } auth)
            {
                credentials.Renew(auth);
            }
        }
    }

    /// <summary>Stores checked runtime values for <paramref name="id"/> and renews the credentials of the instance
    /// mounted there, if any: its next registry request uses them.</summary>
    public void ApplyRuntimeConfig(string id, IReadOnlyDictionary<string, string> values)
    {
        lock (RuntimeConfig.Lock)
        {
            RuntimeConfig.Set(id, values);
            if (values.TryGetValue(RuntimeConfigStore.RegistryAuthKey, out string? auth)
                && _byMountpoint.TryGetValue(id, out MountMetrics? metrics) && metrics.Credentials is { } credentials)
            {
                credentials.Renew(auth);
            }
        }
    }

    /// <summary>Registers the filesystem counters of a mountpoint (every instance kind has them).</summary>
    public void RegisterFs(string mountpoint, Vfs.FsIoStats stats) => _fsByMountpoint[mountpoint] = stats;

    /// <summary>Forgets everything registered for <paramref name="mountpoint"/>.</summary>
    public void Unregister(string mountpoint)
    {
        _byMountpoint.TryRemove(mountpoint, out _);
        _fsByMountpoint.TryRemove(mountpoint, out _);
    }

    /// <summary>Only the backend and cache counters (a remount to an instance without them).</summary>
    public void UnregisterStorage(string mountpoint) => _byMountpoint.TryRemove(mountpoint, out _);

    /// <summary>The filesystem counters <paramref name="id"/> names, or the only ones when it is null.</summary>
    public bool TryFindFs(string? id, out string mountpoint, out Vfs.FsIoStats stats) => TryFind(_fsByMountpoint, id, out mountpoint, out stats);

    /// <summary>Every registered mountpoint's filesystem counters, sorted.</summary>
    public KeyValuePair<string, Vfs.FsIoStats>[] AllFs() => Sorted(_fsByMountpoint);

    /// <summary>Every registered instance, by mountpoint (for the Prometheus page).</summary>
    public KeyValuePair<string, MountMetrics>[] All() => Sorted(_byMountpoint);

    /// <summary>
    /// A sorted copy taken by the dictionary's own ToArray, which holds its locks while it counts and copies. LINQ over
    /// it (OrderBy, ToArray) reads Count and then CopyTo separately: a mount registered between the two made
    /// <c>GET /metrics</c> fail with "the number of elements ... is greater than the available space" (seen by the
    /// API fuzz test).
    /// </summary>
    private static KeyValuePair<string, T>[] Sorted<T>(ConcurrentDictionary<string, T> table)
    {
        var all = table.ToArray();
        Array.Sort(all, (a, b) => string.CompareOrdinal(a.Key, b.Key));
        return all;
    }

    /// <summary>The instance <paramref name="id"/> names, or the only instance when <paramref name="id"/> is null.</summary>
    public bool TryFind(string? id, out string mountpoint, out MountMetrics metrics) => TryFind(_byMountpoint, id, out mountpoint, out metrics);

    /// <summary>Upstream's lookup: an id is an exact key; without one, the single registered instance, if there is one.</summary>
    private static bool TryFind<T>(ConcurrentDictionary<string, T> table, string? id, out string mountpoint, out T value) where T : class
    {
        if (id is not null)
        {
            mountpoint = id;
            return table.TryGetValue(id, out value!);
        }
        var all = table.ToArray();
        if (all.Length == 1)
        {
            (mountpoint, value) = (all[0].Key, all[0].Value);
            return true;
        }
        (mountpoint, value) = ("", null!);
        return false;
    }
}
