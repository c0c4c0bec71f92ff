using System.Text.Json;
using Microsoft.AspNetCore.Http;

namespace Nydus.Actors.Api;

/// <summary>Bounds of every request of every API on a socket of this process.</summary>
public static class ApiLimits
{
    /// <summary>The one body limit of the whole API (Kestrel refuses more with 413 before a handler reads it).</summary>
    public const int MaxBodyBytes = 4 << 20;

    /// <summary>Nesting a JSON body may have; the deepest real body (a mount's) has 2 levels.</summary>
    public const int MaxJsonDepth = 16;

    /// <summary>Longest error message sent or logged; the rest is cut (a message quoting bad input stays short).</summary>
    public const int MaxMessageChars = 2048;

    public static readonly JsonSerializerOptions BodyJson = new() { MaxDepth = MaxJsonDepth };
}

/// <summary>One API request as handlers see it: query values, and a body read with upstream's rules.</summary>
public sealed class ApiRequest(HttpContext http)
{
    public HttpContext Http { get; } = http;
    public string Path => Http.Request.Path.Value ?? "/";
    public CancellationToken Aborted => Http.RequestAborted;

    /// <summary>A query value, URL-decoded; the first wins when repeated (as upstream).</summary>
    public string? Query(string name) =>
        Http.Request.Query.TryGetValue(name, out var values) && values.Count > 0 ? values[0] : null;

    public string RequireQuery(string name) =>
        Query(name) ?? throw ApiError.BadRequest($"query parameter '{name}' is required for {Path}");

    private bool HasBody => Http.Request.ContentLength > 0 || Http.Request.Headers.TransferEncoding.Count > 0;

    /// <summary>Endpoints that take no body refuse one, as upstream does, rather than ignore what a client meant.</summary>
    public void RequireNoBody()
    {
        if (HasBody) throw ApiError.BadRequest($"{Http.Request.Method} {Path} takes no request body");
    }

    /// <summary>The whole body as UTF-8 text (at most <paramref name="limit"/> bytes), for bodies parsed elsewhere.</summary>
    public async Task<string> ReadTextBodyAsync(int limit = ApiLimits.MaxBodyBytes)
    {
        if (!HasBody) throw ApiError.BadRequest($"{Http.Request.Method} {Path} needs a JSON request body");
        if (Http.Request.ContentLength > limit) throw ApiError.TooLarge($"the request body of {Path} is larger than {limit} bytes");
        using var reader = new StreamReader(Http.Request.Body, new System.Text.UTF8Encoding(false, throwOnInvalidBytes: true));
        var buffer = new char[Math.Min(limit, 64 << 10)];
        var text = new System.Text.StringBuilder();
        int read;
        try
        {
            while ((read = await reader.ReadAsync(buffer.AsMemory(), Aborted)) > 0)
            {
                text.Append(buffer, 0, read);
                if (text.Length > limit) throw ApiError.TooLarge($"the request body of {Path} is larger than {limit} bytes");
            }
        }
        catch (System.Text.DecoderFallbackException)
        {
            throw ApiError.BadRequest($"the request body of {Path} is not UTF-8");
        }
        return text.ToString();
    }

    /// <summary>The body as JSON of type <typeparamref name="T"/>, within the API's size and depth bounds.</summary>
    public async Task<T> ReadJsonBodyAsync<T>(int limit = ApiLimits.MaxBodyBytes) where T : class
    {
        var text = await ReadTextBodyAsync(limit);
        try
        {
            return JsonSerializer.Deserialize<T>(text, ApiLimits.BodyJson)
                   ?? throw ApiError.BadRequest($"the request body of {Path} is JSON null");
        }
        catch (JsonException e)
        {
            throw ApiError.BadRequest($"the request body of {Path} is not valid JSON: {e.Message}");
        }
    }
}

/// <summary>A handler's answer: 200 with a JSON body, or 204 without one (upstream's convention).</summary>
public readonly record struct ApiResult(int Status, object? Body)
{
    public static readonly ApiResult NoContent = new(204, null);
    public static ApiResult Ok(object body) => new(200, body);
}

public delegate Task<ApiResult> ApiHandler(ApiRequest request);

/// <summary>A body sent as Prometheus text exposition format rather than JSON.</summary>
public sealed record PrometheusPage(string Text);
