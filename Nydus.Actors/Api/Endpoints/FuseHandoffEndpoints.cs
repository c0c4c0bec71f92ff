using Nydus.Actors.Daemon;

namespace Nydus.Actors.Api.Endpoints;

/// <summary>
/// Upstream's live upgrade and failover endpoints (§4.3): <c>sendfd</c> hands the FUSE descriptor and state to the
/// supervisor; <c>takeover</c> is the state machine's Takeover input (Init → Ready, restoring from the supervisor).
/// </summary>
public static class FuseHandoffEndpoints
{
    public static void Map(ApiRoutes routes, ApiContext api)
    {
        routes.Map("PUT", "/api/v1/daemon/fuse/sendfd", async request =>
        {
            request.RequireNoBody();
            var sent = await DaemonEndpoints.AskAsync<FuseFdSent>(api, SendFuseFd.Instance);
            if (sent.Error is not null) throw ApiError.FromDaemon(sent.Error);
            return ApiResult.NoContent;
        });
        routes.Map("PUT", "/api/v1/daemon/fuse/takeover", async request =>
        {
            request.RequireNoBody();
            // Nydus.NET's extension: ?failover=true makes a --upgrade daemon apply its failover policy once to the
            // taken-over fd, as a crash-detected start does (a hot standby taking over from a crashed daemon).
            var failover = request.Query("failover") switch
            {
                null or "false" => false,
                "true" => true,
                var other => throw ApiError.BadRequest($"query parameter 'failover' must be true or false, not '{other}'"),
            };
            var result = await DaemonEndpoints.AskAsync<DaemonCommandResult>(api, new DaemonCommand(DaemonInput.Takeover) { Failover = failover });
            if (result.Error is not null) throw ApiError.FromDaemon(result.Error);
            return ApiResult.NoContent;
        });
    }
}
