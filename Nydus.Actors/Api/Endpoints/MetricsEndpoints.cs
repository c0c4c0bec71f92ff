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
    public static void Map(ApiRoutes routes, MountMetricsRegistry registry)
    {
        routes.Map("GET", "/metrics", _ => Task.FromResult(new ApiResult(200, new PrometheusPage(PrometheusText(registry)))));
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
        routes.Map("GET", "/api/v1/metrics/backend", request =>
        {
            var (_, metrics) = Find(registry, request);
            var backend = metrics.Backend ?? throw ApiError.NotFound($"the {metrics.BackendType} backend keeps no metrics");
            return Task.FromResult(ApiResult.Ok(BackendBody(metrics.BackendType, backend)));
        });
        routes.Map("GET", "/api/v1/metrics/blobcache", request =>
        {
            var (_, metrics) = Find(registry, request);
            var cache = metrics.Cache ?? throw ApiError.NotFound("this instance has no blob cache");
            var body = new Dictionary<string, object>
            {
                ["store_path"] = metrics.CacheDir ?? "",
                ["whole_hits"] = cache.Hits,
                ["partial_hits"] = 0L,
                ["total"] = cache.Hits + cache.Misses,
                ["hit_bytes"] = cache.HitBytes,
                ["fetched_bytes"] = cache.FetchedBytes,
                ["evicted_blobs"] = cache.EvictedBlobs,
                ["invalidations"] = cache.Invalidations,
                ["readahead_requests"] = cache.ReadAheads,
                ["readahead_bytes"] = cache.ReadAheadBytes,
                ["readahead_failures"] = cache.ReadAheadFailures,
            };
            // Upstream's nydusctl unwraps these numbers: zeros until a prefetch runs (upstream reports zeros too).
            foreach (var field in new[] { "prefetch_data_amount", "prefetch_requests_count", "prefetch_cumulative_time_millis",
                         "prefetch_begin_time_secs", "prefetch_begin_time_millis", "prefetch_end_time_secs", "prefetch_end_time_millis" })
                body[field] = 0L;
            if (metrics.Prefetcher?.Progress is { } prefetch)
            {
                body["prefetch_kind"] = prefetch.Kind;
                body["prefetch_data_amount"] = prefetch.BytesPrefetched;
                body["prefetch_fetched_bytes"] = prefetch.BytesFetched;
                body["prefetch_requests_count"] = prefetch.PiecesDone;
                body["prefetch_requests_total"] = prefetch.PiecesTotal;
                body["prefetch_requests_remaining"] = prefetch.PiecesRemaining;
                // Upstream: the chunks planned before merging; a whole-blob prefetch has no chunk list (0).
                body["prefetch_unmerged_chunks"] = prefetch.ChunksTotal;
                body["prefetch_failed_requests"] = prefetch.PiecesFailed;
                if (prefetch.StartedAt is { } start)
                    body["prefetch_cumulative_time_millis"] = (long)((prefetch.FinishedAt ?? DateTimeOffset.UtcNow) - start).TotalMilliseconds;
                if (prefetch.StartedAt is { } began)
                {
                    body["prefetch_begin_time_secs"] = began.ToUnixTimeSeconds();
                    body["prefetch_begin_time_millis"] = began.Millisecond;
                }
                if (prefetch.FinishedAt is { } ended)
                {
                    body["prefetch_end_time_secs"] = ended.ToUnixTimeSeconds();
                    body["prefetch_end_time_millis"] = ended.Millisecond;
                }
                body["data_all_ready"] = prefetch.FinishedAt is not null && prefetch.PiecesFailed == 0 && prefetch.BlobsFailed == 0
                                         && prefetch.PiecesRemaining == 0;
            }
            return Task.FromResult(ApiResult.Ok(body));
        });
    }

    /// <summary>The same counters as Prometheus text (GET /metrics), one series per mounted instance.</summary>
    public static string PrometheusText(MountMetricsRegistry registry)
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

    private static Dictionary<string, object> BackendBody(string type, BackendMetrics backend) => new()
    {
        ["backend_type"] = type,
        ["read_count"] = backend.ReadCount,
        ["read_errors"] = backend.ReadErrors,
        ["read_amount_total"] = backend.ReadBytes,
        ["read_cumulative_latency_millis_total"] = backend.CumulativeLatencyMicros / 1000,
        // Upstream's per request size arrays (nydusctl reads both and divides one by the other).
        ["read_cumulative_latency_millis_dist"] = backend.GetSizeLatencyMillis(),
        ["read_count_block_size_dist"] = backend.GetSizeReadCounts(),
    };
}
