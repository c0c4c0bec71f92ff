using System.Net;
using System.Text.Json.Serialization;
using Akka.Actor;
using Nydus.Actors.Config;
using Nydus.Actors.Daemon.Block;

namespace Nydus.Actors.Api.Endpoints;

/// <summary>
/// The block service (Nydus.NET's own; upstream's <c>nydusd nbd</c> is a daemon of its own, configured on its command
/// line, with no API): <c>POST /api/v1/block/exports</c> serves an image as a read-only NBD export,
/// <c>GET</c> lists the exports, <c>DELETE ?name=N</c> removes one. Exports are recorded in the daemon's journal and
/// served again after a restart or a live upgrade.
/// </summary>
public static class BlockEndpoints
{
    public const string Path = "/api/v1/block/exports";

    /// <summary>NBD's limit on an export name (4096 bytes), kept far below it: a name is a key, not a document.</summary>
    public const int MaxNameBytes = 255;

    // sun_path is 108 bytes with the terminating NUL.
    private const int MaxSocketPathBytes = 107;

    public static void Map(ApiRoutes routes, ApiContext api)
    {
        routes.Map("POST", Path, async request =>
        {
            var body = await request.ReadJsonBodyAsync<ExportBody>();
            var result = await AskAsync(api, request, Validate(body), api.MountTimeout);
            return ApiResult.Ok(ToBody(result.Export!));
        });
        routes.Map("GET", Path, async request =>
        {
            var list = await DaemonEndpoints.AskAsync<BlockExportList>(api, ListBlockExports.Instance);
            return ApiResult.Ok(new ExportListBody(list.State, [.. list.Exports.Select(ToBody)]));
        });
        routes.Map("DELETE", Path, async request =>
        {
            request.RequireNoBody();
            var name = ValidName(request.RequireQuery("name"));
            await AskAsync(api, request, new UnexportBlockDevice(name), api.AskTimeout);
            return ApiResult.NoContent;
        });
    }

    private static ExportBlockDevice Validate(ExportBody body)
    {
        var name = ValidName(body.Name ?? throw ApiError.BadRequest("\"name\" is required: the export's name, as NBD clients ask for it"));
        if ((body.Source is null) == (body.Mountpoint is null))
            throw ApiError.BadRequest("give exactly one of \"source\" (an image file, with \"config\") and \"mountpoint\" (an instance mounted here)");
        string? mountpoint = null;
        if (body.Mountpoint is not null)
        {
            if (body.Config is not null) throw ApiError.BadRequest("\"config\" goes with \"source\"; an export of a mountpoint uses the mount's config");
            try
            {
                mountpoint = VirtualMountpoint.Validate(body.Mountpoint);
            }
            catch (ConfigException e)
            {
                throw ApiError.BadRequest(e.Message);
            }
        }
        else
        {
            if (body.Config is null) throw ApiError.BadRequest("\"config\" is required with \"source\": the configuration text (backend and cache of the blobs)");
            if (!System.IO.Path.IsPathFullyQualified(body.Source!) || HasControl(body.Source!) || body.Source!.Length > 4095)
                throw ApiError.BadRequest($"\"source\" must be an absolute path of at most 4095 bytes without control characters: {Quote(body.Source!)}");
        }

        if ((body.NbdSocket is null) == (body.NbdTcp is null))
            throw ApiError.BadRequest("give exactly one of \"nbd_socket\" (a Unix socket path) and \"nbd_tcp\" (IP:PORT); for both, add two exports");
        string address;
        if (body.NbdSocket is { } socket)
        {
            if (!System.IO.Path.IsPathFullyQualified(socket) || HasControl(socket) || System.Text.Encoding.UTF8.GetByteCount(socket) > MaxSocketPathBytes)
                throw ApiError.BadRequest($"\"nbd_socket\" must be an absolute path of at most {MaxSocketPathBytes} bytes without control characters: {Quote(socket)}");
            address = System.IO.Path.GetFullPath(socket);
        }
        else
        {
            if (!IPEndPoint.TryParse(body.NbdTcp!, out var endpoint) || !body.NbdTcp!.Contains(':'))
                throw ApiError.BadRequest($"\"nbd_tcp\" must be IP:PORT (an IP address and a port, 0 to pick one): {Quote(body.NbdTcp!)}");
            address = endpoint.ToString();
        }
        return new ExportBlockDevice(name, body.Source, body.Config, mountpoint, address);
    }

    private static string ValidName(string name)
    {
        if (name.Length == 0 || HasControl(name) || System.Text.Encoding.UTF8.GetByteCount(name) > MaxNameBytes)
            throw ApiError.BadRequest($"an export name is 1 to {MaxNameBytes} bytes without control characters: {Quote(name)}");
        return name;
    }

    private static bool HasControl(string s) => s.Any(char.IsControl);

    private static string Quote(string s) => System.Text.Json.JsonSerializer.Serialize(s.Length > 200 ? s[..200] + "..." : s);

    private static async Task<BlockServiceResult> AskAsync(ApiContext api, ApiRequest request, IBlockServiceMessage message, TimeSpan limit)
    {
        BlockServiceResult result;
        try
        {
            var daemon = await api.Daemon.WaitAsync(api.AskTimeout);
            result = await daemon.Ask<BlockServiceResult>(message, limit, request.Aborted);
        }
        catch (Exception e) when (e is AskTimeoutException or TimeoutException)
        {
            throw ApiError.Timeout($"{request.Http.Request.Method} {Path}: the block service did not answer within {limit}");
        }
        if (result.Error is { } error) throw new ApiError(ApiErrorMap.Of(error), result.Message);
        return result;
    }

    private static ExportEntryBody ToBody(BlockExportInfo info) => new(info.Name, info.Source, info.Mountpoint,
        info.Address.StartsWith('/') ? info.Address : null, info.Address.StartsWith('/') ? null : info.Address,
        info.Size, info.Connections, info.State, info.Error);

    private sealed record ExportBody(
        [property: JsonPropertyName("name")] string? Name,
        [property: JsonPropertyName("source")] string? Source,
        [property: JsonPropertyName("config")] string? Config,
        [property: JsonPropertyName("mountpoint")] string? Mountpoint,
        [property: JsonPropertyName("nbd_socket")] string? NbdSocket,
        [property: JsonPropertyName("nbd_tcp")] string? NbdTcp);
}

public sealed record ExportEntryBody(
    [property: JsonPropertyName("name")] string Name,
    [property: JsonPropertyName("source")] string Source,
    [property: JsonPropertyName("mountpoint")] string? Mountpoint,
    [property: JsonPropertyName("nbd_socket")] string? NbdSocket,
    [property: JsonPropertyName("nbd_tcp")] string? NbdTcp,
    [property: JsonPropertyName("size")] long Size,
    [property: JsonPropertyName("connections")] int Connections,
    [property: JsonPropertyName("state")] string State,
    [property: JsonPropertyName("error")] string? Error);

public sealed record ExportListBody(
    [property: JsonPropertyName("state")] string State,
    [property: JsonPropertyName("exports")] IReadOnlyList<ExportEntryBody> Exports);
