using Nydus.Actors.Daemon.Mounts;
using Nydus.Actors.Storage.Backends;

namespace Nydus.Actors.Api.Endpoints;

/// <summary>
/// Upstream's metrics (GET /api/v1/metrics, /files, /pattern, /inflight, /backend, /blobcache), read straight from the
/// counters of the mounted instance: `id` names the virtual mountpoint; without it the only instance answers; no such
/// counter is 404, as upstream. Field names are upstream's; counters this build does not keep are left out rather than
/// reported as zeros.
/// </summary>
public static class MetricsEndpoints
{
    public static void Map(ApiRoutes routes, MountMetricsRegistry registry, Fscache.FscacheMetrics? fscache = null)
    {
        routes.Map("GET", "/metrics", _ => Task.FromResult(new ApiResult(200, new PrometheusPage(PrometheusText(registry, fscache)))));
        // Nydus.NET's own: upstream keeps no fscache counters.
        routes.Map("GET", "/api/v1/metrics/fscache", _ =>
        {
            var metrics = fscache ?? throw ApiError.NotFound("this daemon serves no fscache (a singleton started with --fscache does)");
            return Task.FromResult(ApiResult.Ok(FscacheBody(metrics)));
        });
        routes.Map("GET", "/api/v1/metrics", request =>
        {
            var (mountpoint, stats) = FindFs(registry, request);
            return Task.FromResult(ApiResult.Ok(stats.ToBody(mountpoint)));
        });
        routes.Map("GET", "/api/v1/metrics/files", request =>
        {
            var (_, stats) = FindFs(registry, request);
            // Upstream parses the value as a bool: only "true" asks for the latest read files.
            if (request.Query("latest") == "true")
                return Task.FromResult(ApiResult.Ok(stats.Files?.TakeLatestRead() ?? []));
            return Task.FromResult(ApiResult.Ok((object?)stats.Files?.FilesBody() ?? new Dictionary<string, object>()));
        });
        routes.Map("GET", "/api/v1/metrics/pattern", request =>
        {
            var (_, stats) = FindFs(registry, request);
            return Task.FromResult(ApiResult.Ok(stats.Files?.PatternBody() ?? []));
        });
        routes.Map("GET", "/api/v1/metrics/inflight", _ =>
        {
            var inflight = registry.Inflight ?? throw ApiError.Unsupported("in-flight requests: this daemon serves no FUSE session");
            var ops = inflight.Snapshot();
            if (ops.Count == 0) return Task.FromResult(ApiResult.NoContent);
            var body = ops.Select(op => new Dictionary<string, object>
            {
                ["inode"] = op.Inode,
                ["opcode"] = op.Opcode,
                ["unique"] = op.Unique,
                ["timestamp_secs"] = op.TimestampSecs,
            }).ToList();
            return Task.FromResult(ApiResult.Ok(body));
        });
        // Nydus.NET's own: what this process's FUSE session was sent, and how many requests came back with the resend
        // bit after a crash failover (FUSE_NOTIFY_RESEND) and how many of those were refused as unsafe to repeat.
        routes.Map("GET", "/api/v1/metrics/failover", _ =>
        {
            var dispatcher = registry.Dispatcher ?? throw ApiError.Unsupported("failover counters: this daemon serves no FUSE session (yet)");
            return Task.FromResult(ApiResult.Ok(new Dictionary<string, object>
            {
                ["requests"] = dispatcher.Requests,
                ["resent"] = dispatcher.Resent,
                ["refused_resends"] = dispatcher.RefusedResends,
            }));
        });
        routes.Map("GET", "/api/v1/metrics/backend", request =>
        {
            var (mountpoint, metrics) = Find(registry, request);
            var backend = metrics.Backend ?? throw ApiError.NotFound($"the {metrics.BackendType} backend keeps no metrics");
            return Task.FromResult(ApiResult.Ok(BackendBody(mountpoint, metrics.BackendType, backend)));
        });
        routes.Map("GET", "/api/v1/metrics/blobcache", request =>
        {
            var (mountpoint, metrics) = Find(registry, request);
            var cache = metrics.Cache ?? throw ApiError.NotFound("this instance has no blob cache");
            return Task.FromResult(ApiResult.Ok(BlobCacheBody(mountpoint, metrics, cache)));
        });
    }

    /// <summary>
    /// Every field of upstream's <c>BlobcacheMetrics</c> (what nydus-snapshotter's <c>types.CacheMetrics</c> decodes),
    /// then ours. Entries are the image's blobs kept in the cache and the underlying files their data files, as
    /// upstream counts its cache entries per image. Prefetch fields are zero without a prefetch; this build never
    /// buffers backend data in memory (<c>buffered_backend_size</c> 0) and keeps no partial hits (0).
    /// </summary>
    private static Dictionary<string, object> BlobCacheBody(string mountpoint, MountMetrics metrics, Storage.Cache.BlobCacheMetrics cache)
    {
        var prefetch = metrics.Prefetcher?.Progress;
        DateTimeOffset? began = prefetch?.StartedAt, ended = prefetch?.FinishedAt;
        var body = new Dictionary<string, object>
        {
            ["id"] = mountpoint,
            ["underlying_files"] = metrics.CachedBlobs.Select(id => id + Storage.Cache.BlobFileCache.DataFileSuffix).ToArray(),
            ["store_path"] = metrics.CacheDir ?? "",
            ["partial_hits"] = 0L,
            ["whole_hits"] = cache.Hits,
            ["total"] = cache.Hits + cache.Misses,
            ["entries_count"] = (long)metrics.CachedBlobs.Count,
            ["prefetch_data_amount"] = prefetch?.BytesPrefetched ?? 0L,
            ["prefetch_requests_count"] = prefetch?.PiecesDone ?? 0L,
            // Upstream: the async workers of the cache manager; here the prefetch's threads while it runs.
            ["prefetch_workers"] = metrics.Prefetcher is { } running && ended is null ? running.Threads : 0,
            // Upstream: the chunks planned before merging; a whole-blob prefetch has no chunk list (0).
            ["prefetch_unmerged_chunks"] = prefetch?.ChunksTotal ?? 0L,
            ["prefetch_cumulative_time_millis"] = began is { } start ? (long)((ended ?? DateTimeOffset.UtcNow) - start).TotalMilliseconds : 0L,
            ["prefetch_begin_time_secs"] = began?.ToUnixTimeSeconds() ?? 0L,
            ["prefetch_begin_time_millis"] = (long)(began?.Millisecond ?? 0),
            ["prefetch_end_time_secs"] = ended?.ToUnixTimeSeconds() ?? 0L,
            ["prefetch_end_time_millis"] = (long)(ended?.Millisecond ?? 0),
            ["buffered_backend_size"] = 0L,
            ["data_all_ready"] = prefetch is not null && ended is not null && prefetch.PiecesFailed == 0 && prefetch.BlobsFailed == 0
                                 && prefetch.PiecesRemaining == 0,
            ["hit_bytes"] = cache.HitBytes,
            ["fetched_bytes"] = cache.FetchedBytes,
            ["evicted_blobs"] = cache.EvictedBlobs,
            ["invalidations"] = cache.Invalidations,
            ["readahead_requests"] = cache.ReadAheads,
            ["readahead_bytes"] = cache.ReadAheadBytes,
            ["readahead_failures"] = cache.ReadAheadFailures,
        };
        if (prefetch is not null)
        {
            body["prefetch_kind"] = prefetch.Kind;
            body["prefetch_fetched_bytes"] = prefetch.BytesFetched;
            body["prefetch_requests_total"] = prefetch.PiecesTotal;
            body["prefetch_requests_remaining"] = prefetch.PiecesRemaining;
            body["prefetch_failed_requests"] = prefetch.PiecesFailed;
        }
        return body;
    }

    private static Dictionary<string, long> FscacheBody(Fscache.FscacheMetrics metrics) => new()
    {
        ["opens"] = metrics.Opens,
        ["closes"] = metrics.Closes,
        ["reads"] = metrics.Reads,
        ["read_bytes"] = metrics.ReadBytes,
        ["failed_reads"] = metrics.FailedReads,
        ["malformed_requests"] = metrics.Malformed,
        ["unknown_object_reads"] = metrics.UnknownObjectReads,
        ["reads_from_cache_file"] = metrics.ReadsFromCacheFile,
        ["prefetched_bytes"] = metrics.PrefetchedBytes,
        ["failed_prefetches"] = metrics.FailedPrefetches,
        ["queued_reads"] = metrics.QueuedReads,
    };

    /// <summary>The same counters as Prometheus text (GET /metrics), one series per mounted instance, and the
    /// fscache service's (unlabelled: one per daemon) when there is one.</summary>
    public static string PrometheusText(MountMetricsRegistry registry, Fscache.FscacheMetrics? fscache = null)
    {
        var text = new System.Text.StringBuilder();
        void Counter(string name, string help)
        {
            text.Append("# HELP ").Append(name).Append(' ').Append(help).Append('\n');
            // Prometheus naming: only *_total series count up; the rest (remaining, done) are gauges.
            text.Append("# TYPE ").Append(name).Append(name.EndsWith("_total", StringComparison.Ordinal) ? " counter\n" : " gauge\n");
        }
        void Sample(string name, string mountpoint, long value) =>
            text.Append(name).Append("{mountpoint=\"").Append(mountpoint.Replace("\\", "\\\\").Replace("\"", "\\\""))
                .Append("\"} ").Append(value.ToString(System.Globalization.CultureInfo.InvariantCulture)).Append('\n');

        var all = registry.All();
        (string Name, string Help, Func<MountMetrics, long?> Read)[] series =
        [
            ("nydus_backend_read_count_total", "Backend reads", m => m.Backend?.ReadCount),
            ("nydus_backend_read_errors_total", "Backend reads that failed", m => m.Backend?.ReadErrors),
            ("nydus_backend_read_bytes_total", "Bytes read from the backend", m => m.Backend?.ReadBytes),
            ("nydus_backend_read_latency_microseconds_total", "Time spent in backend reads", m => m.Backend?.CumulativeLatencyMicros),
            ("nydus_blobcache_hits_total", "Reads served from the blob cache", m => m.Cache?.Hits),
            ("nydus_blobcache_misses_total", "Reads the blob cache had to fetch", m => m.Cache?.Misses),
            ("nydus_blobcache_fetched_bytes_total", "Bytes fetched into the blob cache", m => m.Cache?.FetchedBytes),
            ("nydus_blobcache_readahead_bytes_total", "Bytes the on-demand read-ahead fetched into the blob cache", m => m.Cache?.ReadAheadBytes),
            ("nydus_prefetch_bytes_total", "Bytes prefetched into the blob cache", m => m.Prefetcher?.Progress.BytesPrefetched),
            ("nydus_prefetch_fetched_bytes_total", "Bytes the prefetch fetched from the backend", m => m.Prefetcher?.Progress.BytesFetched),
            ("nydus_prefetch_requests_total", "Prefetch requests done", m => m.Prefetcher?.Progress.PiecesDone),
            ("nydus_prefetch_requests_failed_total", "Prefetch requests that failed", m => m.Prefetcher?.Progress.PiecesFailed),
            ("nydus_prefetch_requests_remaining", "Prefetch requests planned and not yet done", m => m.Prefetcher?.Progress.PiecesRemaining),
            ("nydus_prefetch_done", "1 once the prefetch has stopped (finished or cancelled)", m => m.Prefetcher is { } p ? (p.Progress.FinishedAt is null ? 0 : 1) : null),
        ];
        foreach (var (name, help, read) in series)
        {
            Counter(name, help);
            foreach (var (mountpoint, metrics) in all)
                if (read(metrics) is { } value) Sample(name, mountpoint, value);
        }
        Counter("nydus_fs_data_read_bytes_total", "Bytes read through the filesystem");
        foreach (var (mountpoint, stats) in registry.AllFs()) Sample("nydus_fs_data_read_bytes_total", mountpoint, stats.DataRead);
        Counter("nydus_fs_lookups_total", "Lookups served");
        foreach (var (mountpoint, stats) in registry.AllFs()) Sample("nydus_fs_lookups_total", mountpoint, stats.Hits(Vfs.FsIoStats.Lookup));
        if (fscache is not null)
        {
            foreach (var (key, value) in FscacheBody(fscache))
            {
                string name = $"nydus_fscache_{key}_total";
                Counter(name, $"fscache on-demand: {key.Replace('_', ' ')}");
                text.Append(name).Append(' ').Append(value.ToString(System.Globalization.CultureInfo.InvariantCulture)).Append('\n');
            }
        }
        return text.ToString();
    }

    /// <summary>The filesystem counters the request's <c>id</c> names (or the only ones); 404 as upstream's NoCounter.</summary>
    private static (string Mountpoint, Vfs.FsIoStats Stats) FindFs(MountMetricsRegistry registry, ApiRequest request)
    {
        var id = request.Query("id");
        if (!registry.TryFindFs(id, out var mountpoint, out var stats))
            throw ApiError.NotFound(id is null ? "no single mounted instance: name one with ?id=<mountpoint>" : $"no metrics for '{id}'");
        return (mountpoint, stats);
    }

    private static (string Mountpoint, MountMetrics Metrics) Find(MountMetricsRegistry registry, ApiRequest request)
    {
        var id = request.Query("id");
        if (!registry.TryFind(id, out var mountpoint, out var metrics))
            throw ApiError.NotFound(id is null ? "no single mounted instance: name one with ?id=<mountpoint>" : $"no metrics for '{id}'");
        return (mountpoint, metrics);
    }

    /// <summary>Upstream's <c>BackendMetrics</c>, every field (see <see cref="BackendMetrics"/> for the buckets).</summary>
    private static Dictionary<string, object> BackendBody(string mountpoint, string type, BackendMetrics backend) => new()
    {
        ["id"] = mountpoint,
        ["backend_type"] = type,
        ["read_count"] = backend.ReadCount,
        ["read_errors"] = backend.ReadErrors,
        ["read_amount_total"] = backend.ReadBytes,
        ["read_cumulative_latency_millis_total"] = backend.CumulativeLatencyMillis,
        ["read_cumulative_latency_millis_dist"] = backend.LatencyMillisBySize(),
        ["read_count_block_size_dist"] = backend.CountBySize(),
        ["read_latency_sizes_dist"] = backend.LatencyBySize(),
    };
}
