namespace Nydus.Actors.Api;

/// <summary>
/// Exact-path routing, as upstream's router does: the query is ignored for routing, an unknown path is 404, and a
/// known path asked with a method it does not serve is 400 naming the methods it does.
/// </summary>
public sealed class ApiRoutes
{
    private readonly Dictionary<string, Dictionary<string, ApiHandler>> _byPath = new(StringComparer.Ordinal);
    private readonly List<(string Prefix, ApiHandler Handler)> _prefixes = [];

    public ApiRoutes Map(string method, string path, ApiHandler handler)
    {
        if (!_byPath.TryGetValue(path, out var byMethod))
            _byPath[path] = byMethod = new Dictionary<string, ApiHandler>(StringComparer.OrdinalIgnoreCase);
        byMethod.Add(method, handler);
        return this;
    }

    /// <summary>Every path under <paramref name="prefix"/> that has no exact route goes to <paramref name="handler"/>,
    /// whatever the method (for paths that carry a name, like the node agent's <c>/api/v1/agent/daemons/{id}</c>);
    /// the handler routes the rest itself.</summary>
    public ApiRoutes MapPrefix(string prefix, ApiHandler handler)
    {
        _prefixes.Add((prefix, handler));
        return this;
    }

    public bool Serves(string method, string path) =>
        _byPath.TryGetValue(path, out var byMethod) && byMethod.ContainsKey(method);

    public ApiHandler Resolve(string method, string path)
    {
        if (!_byPath.TryGetValue(path, out var byMethod))
        {
            foreach (var (prefix, prefixed) in _prefixes)
                if (path.StartsWith(prefix, StringComparison.Ordinal) && path.Length > prefix.Length) return prefixed;
            throw ApiError.NoRoute(path);
        }
        if (byMethod.TryGetValue(method, out var handler)) return handler;
        throw ApiError.BadRequest($"method {method} is not served on {path} (served: {string.Join(", ", byMethod.Keys)})");
    }
}
