using Akka.Actor;
using Nydus.Actors.Daemon;

namespace Nydus.Actors.Api.Endpoints;

/// <summary>The daemon's own endpoints: info, events, log level, and the state machine inputs start and exit.</summary>
public static class DaemonEndpoints
{
    public static void Map(ApiRoutes routes, ApiContext api)
    {
        routes.Map("GET", "/api/v1/daemon", _ => Task.FromResult(ApiResult.Ok(ToBody(ReadInfo(api), withBackends: true))));
        routes.Map("GET", "/api/v2/daemon", _ => Task.FromResult(ApiResult.Ok(ToBody(ReadInfo(api), withBackends: false))));
        routes.Map("PUT", "/api/v1/daemon", request => SetLogLevelAsync(request, api));
        routes.Map("PUT", "/api/v2/daemon", request => SetLogLevelAsync(request, api));
        routes.Map("GET", "/api/v1/daemon/events", _ =>
        {
            var (totalErrors, totalSize, errors) = api.Events.Snapshot();
            return Task.FromResult(ApiResult.Ok(new ErrorEventsBody(
                ErrorEventLog.MaxErrors, totalErrors, ErrorEventLog.MaxSize, totalSize, errors)));
        });
        routes.Map("GET", "/api/v1/daemon/backend", request => BackendInfoAsync(request, api));
        routes.Map("PUT", "/api/v1/daemon/start", request => InputAsync(request, api, new DaemonCommand(DaemonInput.Start)));
        routes.Map("PUT", "/api/v1/daemon/exit", request => InputAsync(request, api, TriggerExit.Instance));
    }

    /// <summary>The daemon's state and instances from the read model: answered as soon as the API listens (INIT
    /// until the daemon's state machine moves on), without waiting for the daemon actor to exist.</summary>
    private static DaemonInfo ReadInfo(ApiContext api) =>
        api.Daemon.IsCanceled ? throw DaemonFailedToStart() : api.ReadModel.Current;

    private static ApiError DaemonFailedToStart() =>
        ApiError.NotReady("the daemon failed to start (its log says why) and is exiting");

    /// <summary>
    /// Upstream's export_backend_info: the superblock of the RAFS instance at <c>?mountpoint=</c>. Unlike upstream
    /// (500 for both) nothing mounted there is a 404 and an instance that is not RAFS (passthrough_fs) a 400.
    /// </summary>
    private static Task<ApiResult> BackendInfoAsync(ApiRequest request, ApiContext api)
    {
        request.RequireNoBody();
        string mountpoint;
        try
        {
            mountpoint = Config.VirtualMountpoint.Validate(request.RequireQuery("mountpoint"));
        }
        catch (Config.ConfigException e)
        {
            throw ApiError.BadRequest(e.Message);
        }
        var info = ReadInfo(api);
        if (!info.Backends.TryGetValue(mountpoint, out var backend)) throw ApiError.NotFound($"nothing is mounted at {mountpoint}");
        return Task.FromResult(ApiResult.Ok(backend.SuperMeta
                            ?? throw ApiError.BadRequest($"{mountpoint} is a {backend.BackendType} instance, which has no RAFS superblock")));
    }

    private static async Task<ApiResult> InputAsync(ApiRequest request, ApiContext api, IDaemonMessage message)
    {
        request.RequireNoBody();
        var result = await AskAsync<DaemonCommandResult>(api, message);
        if (result.Error is not null) throw ApiError.FromDaemon(result.Error);
        return ApiResult.NoContent;
    }

    private static async Task<ApiResult> SetLogLevelAsync(ApiRequest request, ApiContext api)
    {
        var body = await request.ReadJsonBodyAsync<DaemonConfigBody>();
        if (body.LogLevel is null) throw ApiError.BadRequest("the body must set \"log_level\"");
        if (!api.SetLogLevel(body.LogLevel))
            throw ApiError.BadRequest($"unknown log level '{body.LogLevel}' (off, error, warn, info, debug, trace)");
        return ApiResult.NoContent;
    }

    /// <summary>Asks the owning actor; a stopped daemon or a slow answer becomes a clear API error.</summary>
    internal static async Task<T> AskAsync<T>(ApiContext api, object message)
    {
        try
        {
            var daemon = await api.Daemon.WaitAsync(api.AskTimeout);
            return await daemon.Ask<T>(message, api.AskTimeout);
        }
        catch (Exception e) when (e is AskTimeoutException or TimeoutException)
        {
            throw ApiError.Timeout($"the daemon did not answer within {api.AskTimeout}");
        }
        catch (TaskCanceledException) when (api.Daemon.IsCanceled)
        {
            // The API comes up beside the start; a start that fails before the daemon actor exists (a damaged
            // journal, a refused mount) cancels it, and a client asking meanwhile gets that, not a stack trace.
            throw DaemonFailedToStart();
        }
    }

    private static DaemonInfoBody ToBody(DaemonInfo info, bool withBackends) => new(
        new BuildInfoBody(DaemonVersion.PackageVersion, DaemonVersion.GitCommit, DaemonVersion.BuildTime, DaemonVersion.Profile, DaemonVersion.Runtime),
        info.Id,
        info.Supervisor,
        info.State.ToApiName(),
        withBackends
            ? info.Backends.ToDictionary(kv => kv.Key, kv => new FsBackendDescriptorBody(
                kv.Value.BackendType, kv.Value.Mountpoint, FormatMountedTime(kv.Value.MountedTime),
                kv.Value.RedactedConfigJson is null ? null : System.Text.Json.Nodes.JsonNode.Parse(kv.Value.RedactedConfigJson)))
            : null);

    /// <summary>Upstream prints <c>2024-05-01 08:09:10.123456789 +00:00:00</c>.</summary>
    private static string FormatMountedTime(DateTimeOffset t) =>
        t.UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss.fffffff", System.Globalization.CultureInfo.InvariantCulture) + "00 +00:00:00";
}
