using System.Text.Json;
using Nydus.Actors.Config;
using Nydus.Actors.Daemon.Mounts;

namespace Nydus.Actors.Api.Endpoints;

/// <summary>
/// Upstream's runtime configuration API (<c>/api/v1/config</c>, ConfigHandler): <c>PUT ?id=&lt;mountpoint&gt;</c> with
/// a JSON object of string values, <c>GET [?id=]</c> to read them back. nydus-snapshotter's credential renewal sends
/// <c>{"registry_auth": "&lt;base64 user:password&gt;"}</c> for the instance at that virtual mountpoint: its registry
/// backend uses them from its next request on. The whole body is checked before anything is stored; neither body
/// nor values are logged.
/// </summary>
public static class ConfigEndpoints
{
    private const int MaxBodyBytes = 64 << 10;

    public static void Map(ApiRoutes routes, MountMetricsRegistry registry)
    {
        routes.Map("GET", "/api/v1/config", request =>
        {
            request.RequireNoBody();
            return Task.FromResult(ApiResult.Ok(registry.RuntimeConfig.Snapshot(request.Query("id"))));
        });
        routes.Map("PUT", "/api/v1/config", async request =>
        {
            var values = Parse(await request.ReadTextBodyAsync(MaxBodyBytes));
            foreach (var (key, value) in values)
            {
                if (RuntimeConfigStore.CheckKey(key, value) is { } refused)
                    throw refused.Unsupported ? ApiError.Unsupported(refused.Message) : ApiError.BadRequest(refused.Message);
            }
            // Upstream keys values without an id under the empty id, which no instance has.
            registry.ApplyRuntimeConfig(request.Query("id") ?? "", values);
            return ApiResult.NoContent;
        });
    }

    /// <summary>A JSON object of strings, as upstream's <c>HashMap&lt;String, String&gt;</c>; messages never quote values.</summary>
    private static Dictionary<string, string> Parse(string body)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(body);
        }
        catch (JsonException)
        {
            throw ApiError.BadRequest("the request body of /api/v1/config is not valid JSON");
        }

        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object)
                throw ApiError.BadRequest("the request body of /api/v1/config must be a JSON object of strings");
            var values = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var property in document.RootElement.EnumerateObject())
            {
                if (property.Value.ValueKind != JsonValueKind.String)
                    throw ApiError.BadRequest($"{property.Name}: must be a string");
                if (!values.TryAdd(property.Name, property.Value.GetString()!))
                    throw ApiError.BadRequest($"{property.Name}: given twice");
            }
            if (values.Count == 0) throw ApiError.BadRequest("the request body of /api/v1/config names no key");
            return values;
        }
    }
}
