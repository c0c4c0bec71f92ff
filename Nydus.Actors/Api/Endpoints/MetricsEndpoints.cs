using Nydus.Actors.Daemon.Mounts;
using Nydus.Actors.Storage.Backends;

namespace Nydus.Actors.Api.Endpoints;

/// <summary>
/// Upstream's backend and blob cache metrics (GET /api/v1/metrics/backend, /blobcache), read straight from the
/// counters of the mounted instance: `id` names the virtual mountpoint; without it the only instance answers; no such
/// counter is 404, as upstream. Field names are upstream's; counters this build does not keep are left out rather than
/// reported as zeros.
/// </summary>
public static class MetricsEndpoints
{
    public static void Map(ApiRoutes routes, MountMetricsRegistry registry)
    {
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
            return Task.FromResult(ApiResult.Ok(new Dictionary<string, object>
            {
                ["store_path"] = metrics.CacheDir ?? "",
                ["whole_hits"] = cache.Hits,
                ["partial_hits"] = 0L,
                ["total"] = cache.Hits + cache.Misses,
                ["hit_bytes"] = cache.HitBytes,
                ["fetched_bytes"] = cache.FetchedBytes,
                ["evicted_blobs"] = cache.EvictedBlobs,
                ["invalidations"] = cache.Invalidations,
            }));
        });
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
        ["read_cumulative_latency_millis_dist"] = backend.GetLatencyHistogram(),
    };
}
