namespace Nydus.Actors.Api.Endpoints;

/// <summary>
/// Upstream endpoints this build does not serve yet. They answer 501 with a message saying so, instead of a
/// 404 that would suggest a typo or a silent success that would lie.
/// </summary>
public static class PendingEndpoints
{
    private static readonly (string Method, string Path, string What)[] Pending =
    [
        ("GET", "/api/v2/blobs", "the blob cache service"),
        ("PUT", "/api/v2/blobs", "the blob cache service"),
        ("DELETE", "/api/v2/blobs", "the blob cache service"),
    ];

    /// <summary>Maps every pending endpoint not already served by <paramref name="routes"/>.</summary>
    public static void Map(ApiRoutes routes)
    {
        foreach (var (method, path, what) in Pending)
        {
            if (routes.Serves(method, path)) continue;
            routes.Map(method, path, _ => throw ApiError.Unsupported($"{what} ({method} {path}) is not supported yet"));
        }
    }
}
