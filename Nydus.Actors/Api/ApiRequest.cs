using System.Text.Json;
using Microsoft.AspNetCore.Http;

namespace Nydus.Actors.Api;

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
    public async Task<string> ReadTextBodyAsync(int limit = 4 << 20)
    {
        if (!HasBody) throw ApiError.BadRequest($"{Http.Request.Method} {Path} needs a JSON request body");
        if (Http.Request.ContentLength > limit) throw ApiError.BadRequest($"the request body of {Path} is larger than {limit} bytes");
        using var reader = new StreamReader(Http.Request.Body, new System.Text.UTF8Encoding(false, throwOnInvalidBytes: true));
        var buffer = new char[Math.Min(limit, 64 << 10)];
        var text = new System.Text.StringBuilder();
        int read;
        try
        {
            while ((read = await reader.ReadAsync(buffer.AsMemory(), Aborted)) > 0)
            {
                text.Append(buffer, 0, read);
                if (text.Length > limit) throw ApiError.BadRequest($"the request body of {Path} is larger than {limit} bytes");
            }
        }
        catch (System.Text.DecoderFallbackException)
        {
            throw ApiError.BadRequest($"the request body of {Path} is not UTF-8");
        }
        return text.ToString();
    }

    public async Task<T> ReadJsonBodyAsync<T>() where T : class
    {
        if (!HasBody) throw ApiError.BadRequest($"{Http.Request.Method} {Path} needs a JSON request body");
        try
        {
            return await JsonSerializer.DeserializeAsync<T>(Http.Request.Body, cancellationToken: Aborted)
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
