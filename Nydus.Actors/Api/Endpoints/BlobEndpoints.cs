using System.Text.Json;
using System.Text.Json.Nodes;
using Nydus.Actors.Config;
using Nydus.Actors.Storage.Cache.Blobs;

namespace Nydus.Actors.Api.Endpoints;

/// <summary>
/// Upstream's blob cache manager API, <c>/api/v2/blobs</c>: <c>PUT</c> adds a bootstrap entry (body: a
/// <c>BlobCacheEntry</c>, legacy <c>config</c> or <c>config_v2</c>), <c>DELETE ?domain_id=D[&amp;blob_id=B]</c> removes
/// a domain or one entry, <c>GET</c> lists. The blob cache actor owns the entries and records them in the journal.
/// </summary>
/// <remarks>
/// Departures from upstream, where it panics or answers 500 "UNDEFINED": <c>GET</c> is implemented (upstream's
/// handler is <c>todo!()</c>): without a query it lists every entry, with <c>domain_id</c> the domain's, with
/// <c>blob_id</c> too the one entry (404 when absent); configs are shown without secrets. A duplicate bootstrap with
/// another config is 409 (the same one again is 204), an unknown domain or blob 404, a bad entry 400. <c>DELETE</c>
/// with <c>blob_id</c> alone is upstream's fscache cull (<see cref="Fscache.FscacheCull"/>): 204 when culled, 404 when
/// no volume has the blob's cache file, 409 when the kernel holds it open, 501 on a daemon without fscache. Served by FUSE daemons too (upstream:
/// singleton only), so that an upgraded or restarted FUSE daemon keeps them as well.
/// </remarks>
public static class BlobEndpoints
{
    public const string Path = "/api/v2/blobs";

    public static void Map(ApiRoutes routes, ApiContext api)
    {
        routes.Map("PUT", Path, async request =>
        {
            var text = await request.ReadTextBodyAsync();
            BlobCacheEntry entry;
            try
            {
                entry = BlobCacheEntry.Parse(text, $"PUT {Path} body");
            }
            catch (ConfigException e)
            {
                throw ApiError.BadRequest(e.Message);
            }
            Check(await DaemonEndpoints.AskAsync<BlobCacheResult>(api, new AddBlobEntry(entry)));
            return ApiResult.NoContent;
        });
        routes.Map("DELETE", Path, async request =>
        {
            request.RequireNoBody();
            var domainId = request.Query("domain_id");
            var blobId = request.Query("blob_id") ?? "";
            if (domainId is null)
            {
                if (blobId.Length == 0) throw ApiError.BadRequest($"DELETE {Path} needs the query parameter domain_id (and optionally blob_id)");
                // Upstream's fscache cull; the id becomes a file name in the cache dir.
                if (blobId.Contains('/') || blobId.Contains('\0') || blobId is "." or "..")
                    throw ApiError.BadRequest($"blob_id '{blobId}' is not a blob id");
                Check(await DaemonEndpoints.AskAsync<BlobCacheResult>(api, new CullBlob(blobId)));
                return ApiResult.NoContent;
            }
            Check(await DaemonEndpoints.AskAsync<BlobCacheResult>(api, new RemoveBlobEntry(domainId, blobId)));
            return ApiResult.NoContent;
        });
        routes.Map("GET", Path, async request =>
        {
            request.RequireNoBody();
            var domainId = request.Query("domain_id");
            var blobId = request.Query("blob_id");
            if (blobId is not null)
            {
                var listing = await DaemonEndpoints.AskAsync<BlobCacheListing>(api, new ListBlobEntries(domainId ?? ""));
                var key = BlobCacheEntry.Key(domainId ?? "", blobId);
                var item = listing.Items.FirstOrDefault(i => i.Key == key)
                           ?? throw ApiError.NotFound($"no blob {key} in the blob cache manager");
                return ApiResult.Ok(ToBody(item));
            }
            var items = (await DaemonEndpoints.AskAsync<BlobCacheListing>(api, new ListBlobEntries(domainId))).Items;
            if (domainId is not null && items.Count == 0) throw ApiError.NotFound($"no domain '{domainId}' in the blob cache manager");
            return ApiResult.Ok(new JsonObject { ["blobs"] = new JsonArray([.. items.Select(ToBody)]) });
        });
    }

    private static void Check(BlobCacheResult result)
    {
        if (result.Error is { } kind) throw new ApiError(ApiErrorMap.Of(kind), result.Message);
    }

    /// <summary>An entry in upstream's <c>BlobCacheEntry</c> shape (config as <c>config_v2</c>, secrets blanked), plus
    /// <c>ref_count</c> (data blobs: bootstraps of the domain using it) and <c>data_blobs</c> (bootstraps).</summary>
    private static JsonObject ToBody(BlobCacheItem item)
    {
        var config = JsonNode.Parse(ConfigJson.SerializeWithoutSecrets(item.Entry.Config))!.AsObject();
        if (item.MetadataPath is not null) config["metadata_path"] = item.MetadataPath;
        var body = new JsonObject
        {
            ["type"] = item.Type,
            ["id"] = item.BlobId,
            ["domain_id"] = item.DomainId,
            ["config_v2"] = config,
        };
        if (item.Type == BlobCacheEntry.DataBlobType) body["ref_count"] = item.References;
        else body["data_blobs"] = new JsonArray([.. item.DataBlobs.Select(b => (JsonNode)JsonValue.Create(b))]);
        return body;
    }
}
