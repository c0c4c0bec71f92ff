using System.Text.Json;
using System.Text.Json.Serialization;
using Akka.Actor;
using Nydus.Actors.Api;

namespace Nydus.Actors.Agent;

/// <summary>
/// The node agent's API on its own socket (<c>nydusd agent --sock</c>), answered by <see cref="NodeAgentActor"/>:
/// <c>POST /api/v1/agent/daemons</c> (start), <c>GET /api/v1/agent/daemons</c> (list), <c>GET .../{id}</c>,
/// <c>PUT .../{id}/upgrade</c>, <c>DELETE .../{id}</c>; and <c>GET /api/v1/fleet</c>, every agent's daemons when the
/// agent is in a cluster (<see cref="Fleet.FleetNode"/>), its own otherwise; <c>GET /api/v1/fleet/events</c> and the
/// Prometheus page <c>GET /metrics</c> (<see cref="Fleet.FleetMetrics"/>).
/// </summary>
public static class AgentEndpoints
{
    public const string Daemons = "/api/v1/agent/daemons";
    public const string FleetPath = "/api/v1/fleet";
    public const string RolloutPath = "/api/v1/fleet/rollout";
    public const string EventsPath = "/api/v1/fleet/events";

    /// <summary>Starting a daemon waits for RUNNING and the first sendfd, a failover or upgrade for a few steps.</summary>
    private static readonly TimeSpan OperationTimeout = TimeSpan.FromMinutes(3);

    private sealed record AddBody(
        [property: JsonPropertyName("id")] string? Id,
        [property: JsonPropertyName("args")] string[]? Args);

    private sealed record UpgradeBody([property: JsonPropertyName("binary")] string? Binary);

    private sealed record RolloutBody(
        [property: JsonPropertyName("binary")] string? Binary,
        [property: JsonPropertyName("batch")] int? Batch,
        [property: JsonPropertyName("max_unavailable")] int? MaxUnavailable,
        [property: JsonPropertyName("pause_on_failure")] bool? PauseOnFailure,
        [property: JsonPropertyName("skip_older_agents")] bool? SkipOlderAgents);

    public static void Map(ApiRoutes routes, IActorRef agent, Fleet.FleetNode? fleet = null)
    {
        routes.Map("GET", FleetPath, async request =>
        {
            request.RequireNoBody();
            return new ApiResult(200, await FleetViewAsync(agent, fleet));
        });
        routes.Map("GET", "/metrics", async request =>
        {
            request.RequireNoBody();
            var view = await FleetViewAsync(agent, fleet);
            return new ApiResult(200, new PrometheusPage(Fleet.FleetMetrics.PrometheusText(view, fleet?.Events.Rollout, fleet?.Events.Total ?? 0)));
        });
        routes.Map("GET", EventsPath, request =>
        {
            request.RequireNoBody();
            if (fleet is null) throw ApiError.Unsupported("this agent is not in a fleet (nydus.agent.cluster.enabled = off): it keeps no fleet events");
            return Task.FromResult(new ApiResult(200, fleet.Events.Snapshot()));
        });
        MapRollout(routes, fleet);
        routes.Map("GET", Daemons, async request =>
        {
            request.RequireNoBody();
            return Answer(await AskAsync(agent, ListManagedDaemons.Instance, TimeSpan.FromSeconds(30)));
        });
        routes.Map("POST", Daemons, async request =>
        {
            var text = await request.ReadTextBodyAsync(1 << 20);
            AddBody body;
            try
            {
                body = JsonSerializer.Deserialize<AddBody>(text, ApiLimits.BodyJson) ?? throw ApiError.BadRequest("the request body is JSON null");
            }
            catch (JsonException e)
            {
                throw ApiError.BadRequest($"the request body is not {{\"id\": \"...\", \"args\": [\"...\"]}}: {e.Message}");
            }
            if (body.Id is null) throw ApiError.BadRequest("\"id\" is required");
            if (body.Args is null) throw ApiError.BadRequest("\"args\" is required (nydusd arguments without --apisock, --supervisor and --id)");
            return Answer(await AskAsync(agent, new AddManagedDaemon(body.Id, body.Args), OperationTimeout));
        });
        routes.MapPrefix(Daemons + "/", async request =>
        {
            var rest = request.Path[(Daemons.Length + 1)..].Split('/');
            var method = request.Http.Request.Method;
            switch (rest)
            {
                case [var id] when method == "GET":
                    request.RequireNoBody();
                    return Answer(await AskAsync(agent, new GetManagedDaemon(id), TimeSpan.FromSeconds(30)));
                case [var id] when method == "DELETE":
                    request.RequireNoBody();
                    return Answer(await AskAsync(agent, new RemoveManagedDaemon(id), OperationTimeout));
                case [var id, "upgrade"] when method == "PUT":
                    string? binary = null;
                    if (request.Http.Request.ContentLength > 0)
                    {
                        try
                        {
                            binary = JsonSerializer.Deserialize<UpgradeBody>(await request.ReadTextBodyAsync(64 << 10), ApiLimits.BodyJson)?.Binary;
                        }
                        catch (JsonException e)
                        {
                            throw ApiError.BadRequest($"the request body is not {{\"binary\": \"/path/to/nydusd\"}}: {e.Message}");
                        }
                    }
                    if (binary is not null && !Path.IsPathRooted(binary)) throw ApiError.BadRequest($"\"binary\" must be an absolute path, not {binary}");
                    return Answer(await AskAsync(agent, new UpgradeManagedDaemon(id, binary), OperationTimeout));
                case [_] or [_, "upgrade"]:
                    throw ApiError.BadRequest($"method {method} is not served on {request.Path}");
                default:
                    throw ApiError.NoRoute(request.Path);
            }
        });
    }

    /// <summary>The fleet as this agent's replica sees it; without a cluster, its own daemons.</summary>
    private static async Task<Fleet.FleetView> FleetViewAsync(IActorRef agent, Fleet.FleetNode? fleet)
    {
        if (fleet is not null)
        {
            try
            {
                return await fleet.ViewAsync(TimeSpan.FromSeconds(30));
            }
            catch (AskTimeoutException)
            {
                throw ApiError.Timeout("the fleet view did not come within 30 s");
            }
        }
        var list = Answer(await AskAsync(agent, ListManagedDaemons.Instance, TimeSpan.FromSeconds(30)));
        return Fleet.FleetNode.Standalone((ManagedDaemonView[])list.Body!, Daemon.DaemonVersion.PackageVersion);
    }

    /// <summary><c>POST /api/v1/fleet/rollout</c> (start), <c>GET</c> (status), <c>PUT .../pause|resume|abort</c>: sent
    /// to the fleet's rollout coordinator, wherever it runs.</summary>
    private static void MapRollout(ApiRoutes routes, Fleet.FleetNode? fleet)
    {
        routes.Map("GET", RolloutPath, async request =>
        {
            request.RequireNoBody();
            return RolloutAnswer(await AskRolloutAsync(fleet, Fleet.GetRollout.Instance));
        });
        routes.Map("POST", RolloutPath, async request =>
        {
            RolloutBody body;
            try
            {
                body = JsonSerializer.Deserialize<RolloutBody>(await request.ReadTextBodyAsync(64 << 10), ApiLimits.BodyJson)
                       ?? throw ApiError.BadRequest("the request body is JSON null");
            }
            catch (JsonException e)
            {
                throw ApiError.BadRequest($"the request body is not {{\"binary\": \"/path/to/nydusd\", \"batch\": N, ...}}: {e.Message}");
            }
            if (body.Binary is null) throw ApiError.BadRequest("\"binary\" is required: the nydusd binary to roll out, an absolute path on every host");
            var start = new Fleet.StartRollout(body.Binary, body.Batch ?? 1, body.MaxUnavailable ?? 0, body.PauseOnFailure ?? false,
                body.SkipOlderAgents ?? false);
            return RolloutAnswer(await AskRolloutAsync(fleet, start));
        });
        routes.MapPrefix(RolloutPath + "/", async request =>
        {
            var action = request.Path[(RolloutPath.Length + 1)..];
            if (action is not (Fleet.ControlRollout.Pause or Fleet.ControlRollout.Resume or Fleet.ControlRollout.Abort)) throw ApiError.NoRoute(request.Path);
            if (request.Http.Request.Method != "PUT") throw ApiError.BadRequest($"method {request.Http.Request.Method} is not served on {request.Path}");
            request.RequireNoBody();
            return RolloutAnswer(await AskRolloutAsync(fleet, new Fleet.ControlRollout(action)));
        });
    }

    private static async Task<Fleet.RolloutReply> AskRolloutAsync(Fleet.FleetNode? fleet, Fleet.IFleetMessage command)
    {
        if (fleet is null) throw ApiError.Unsupported("this agent is not in a fleet (nydus.agent.cluster.enabled = off): rollouts need the cluster");
        try
        {
            return await fleet.RolloutAsync(command, TimeSpan.FromSeconds(30));
        }
        catch (AskTimeoutException)
        {
            throw ApiError.Timeout("the fleet's rollout coordinator did not answer within 30 s (no majority, or it is moving to another agent)");
        }
    }

    private static ApiResult RolloutAnswer(Fleet.RolloutReply reply)
    {
        if (reply.Error is not null)
            throw new ApiError(Enum.TryParse<ApiErrorKind>(reply.ErrorKind, out var kind) ? kind : ApiErrorKind.Internal, reply.Error);
        return new ApiResult(reply.Status, reply.Rollout);
    }

    private static async Task<AgentReply> AskAsync(IActorRef agent, object message, TimeSpan timeout)
    {
        try
        {
            return await agent.Ask<AgentReply>(message, timeout);
        }
        catch (AskTimeoutException)
        {
            throw ApiError.Timeout($"the agent did not answer within {timeout}");
        }
    }

    private static ApiResult Answer(AgentReply reply)
    {
        if (reply.Error is not null) throw new ApiError(reply.ErrorKind ?? ApiErrorKind.Internal, reply.Error);
        return new ApiResult(reply.Status, reply.Body);
    }
}
