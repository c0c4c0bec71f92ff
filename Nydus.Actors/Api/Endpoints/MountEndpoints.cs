using Akka.Actor;
using Nydus.Actors.Config;
using Nydus.Actors.Daemon.Mounts;

namespace Nydus.Actors.Api.Endpoints;

/// <summary>
/// Upstream's mount API: <c>POST /api/v1/mount?mountpoint=/x</c> mounts, <c>PUT</c> remounts (a new RAFS image under
/// a live mountpoint), <c>DELETE</c> unmounts; 204 on success. Bodies are <c>{"source","fs_type","config",
/// "prefetch_files"?}</c> with the config as text. The daemon's filesystem service does the work, one change at a
/// time; a request that fails leaves the mount table as it was.
/// </summary>
/// <remarks>
/// Departure from upstream, which answers 500 for both: a mountpoint in use is 409 (<c>AlreadyExists</c>) and nothing
/// mounted there is 404 (<c>NotFound</c>), so a client can tell them from a daemon failure. A bad body, config or image
/// is 400 with a message naming what is wrong.
/// </remarks>
public static class MountEndpoints
{
    public const string Path = "/api/v1/mount";

    public static void Map(ApiRoutes routes, ApiContext api)
    {
        routes.Map("POST", Path, async request =>
            await SendAsync(api, request, new MountFilesystem(await ReadCommandAsync(request))));
        routes.Map("PUT", Path, async request =>
            await SendAsync(api, request, new RemountFilesystem(await ReadCommandAsync(request))));
        routes.Map("DELETE", Path, async request =>
        {
            var mountpoint = ValidMountpoint(request);
            request.RequireNoBody();
            return await SendAsync(api, request, new UmountFilesystem(mountpoint));
        });
    }

    private static string ValidMountpoint(ApiRequest request)
    {
        try
        {
            return VirtualMountpoint.Validate(request.RequireQuery("mountpoint"));
        }
        catch (ConfigException e)
        {
            throw ApiError.BadRequest(e.Message);
        }
    }

    private static async Task<FsBackendMountCmd> ReadCommandAsync(ApiRequest request)
    {
        var mountpoint = ValidMountpoint(request);
        var body = await request.ReadTextBodyAsync();
        try
        {
            // The config text is parsed where the instance is opened; a config that does not parse is a 400 from there.
            return FsBackendMountCmd.FromApiRequest(body, mountpoint);
        }
        catch (ConfigException e)
        {
            throw ApiError.BadRequest(e.Message);
        }
    }

    /// <summary>
    /// Sends a change to the mount table with the request's time limit: the request is abandoned when the limit passes
    /// or the client hangs up, and an abandoned change is not carried out later (it is dropped from the queue, or the
    /// image being opened is closed again). One that is already being attached completes; the answer then says 504
    /// although it happened, and GET /api/v1/daemon shows the table as it is.
    /// </summary>
    private static async Task<ApiResult> SendAsync(ApiContext api, ApiRequest request, MountChangeRequest change)
    {
        using var abandoned = CancellationTokenSource.CreateLinkedTokenSource(request.Aborted);
        abandoned.CancelAfter(api.MountTimeout);
        MountOperationResult result;
        try
        {
            var daemon = await api.Daemon.WaitAsync(api.AskTimeout);
            result = await daemon.Ask<MountOperationResult>(change with { Abandoned = abandoned.Token }, api.MountTimeout);
        }
        catch (Exception e) when (e is AskTimeoutException or TimeoutException)
        {
            abandoned.Cancel();
            throw ApiError.Timeout($"{request.Http.Request.Method} {Path}: no answer within {api.MountTimeout}; the change is not carried out later");
        }
        if (result.Error is { } error) throw new ApiError(ApiErrorMap.Of(error), result.Message);
        return ApiResult.NoContent;
    }
}
