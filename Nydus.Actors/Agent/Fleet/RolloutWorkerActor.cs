using System.Text.Json;
using Akka.Actor;
using Nydus.Actors.Api;

namespace Nydus.Actors.Agent.Fleet;

/// <summary>
/// An agent's end of a rollout (<c>/user/rollout-worker</c> in the fleet system): takes the coordinator's
/// <see cref="UpgradeForRollout"/>, has the local agent apply it (idempotent: <see cref="ApplyRolloutUpgrade"/>), then
/// holds the health gate: the daemon running with its fd held by the agent, and its error counters flat over the
/// settle time (a new process that fails reads shows it there). Each request runs as its own task whose result goes
/// straight to the coordinator; the actor keeps no state.
/// </summary>
public sealed class RolloutWorkerActor : ReceiveActor
{
    public const string Name = "rollout-worker";

    public RolloutWorkerActor(IActorRef agent, TimeSpan upgradeTimeout)
    {
        Receive<UpgradeForRollout>(request =>
            UpgradeAndCheckAsync(agent, request, upgradeTimeout).PipeTo(Sender,
                failure: e => new RolloutStepResult(request.RolloutId, request.Daemon, false, false, 0, 0, e.Message)));
    }

    public static Props Props(IActorRef agent, TimeSpan upgradeTimeout) =>
        Akka.Actor.Props.Create(() => new RolloutWorkerActor(agent, upgradeTimeout));

    private static async Task<RolloutStepResult> UpgradeAndCheckAsync(IActorRef agent, UpgradeForRollout request, TimeSpan timeout)
    {
        RolloutStepResult Failed(string why, int oldPid = 0, int newPid = 0) =>
            new(request.RolloutId, request.Daemon, false, false, oldPid, newPid, why);

        var reply = await agent.Ask<AgentReply>(new ApplyRolloutUpgrade(request.RolloutId, request.Daemon, request.Binary), timeout);
        if (reply.Error is not null || reply.Body is not RolloutApplication applied)
            return Failed(reply.Error ?? "the agent gave no answer body");

        // Health gate: running with the fd held; error counters read now and after the settle time must not move.
        var before = await ErrorCountAsync(applied.ApiSocket);
        await Task.Delay(TimeSpan.FromMilliseconds(request.SettleMs));
        var entry = await agent.Ask<AgentReply>(new GetManagedDaemon(request.Daemon), TimeSpan.FromSeconds(30));
        if (entry.Body is not ManagedDaemonView view) return Failed(entry.Error ?? "the daemon is no longer listed", applied.OldPid, applied.NewPid);
        if (view.State != ManagedStates.Running || !view.FdHeld)
            return Failed($"health gate: daemon {request.Daemon} is {view.State}{(view.FdHeld ? "" : ", its fd not held")} after the upgrade"
                          + (view.Message is { } m ? $" ({m})" : ""), applied.OldPid, applied.NewPid);
        if (view.Pid != applied.NewPid && !applied.Repeated)
            return Failed($"health gate: daemon {request.Daemon} changed process after the upgrade (pid {applied.NewPid} -> {view.Pid}: it failed over)",
                applied.OldPid, applied.NewPid);
        var after = await ErrorCountAsync(view.ApiSocket);
        if (before is { } b && after is { } a && a > b)
            return Failed($"health gate: daemon {request.Daemon} reported {a - b} failed requests within {request.SettleMs} ms of the upgrade",
                applied.OldPid, applied.NewPid);
        return new RolloutStepResult(request.RolloutId, request.Daemon, true, applied.Repeated, applied.OldPid, applied.NewPid, null);
    }

    /// <summary>The sum of the daemon's <c>fop_errors</c> (GET /api/v1/metrics), or null when it keeps none to read.</summary>
    private static async Task<long?> ErrorCountAsync(string apiSocket)
    {
        if (string.IsNullOrEmpty(apiSocket)) return null;
        try
        {
            using var client = new ApiClient(apiSocket, TimeSpan.FromSeconds(10));
            var (status, body) = await client.SendAsync("GET", "/api/v1/metrics");
            if (status != 200) return null;
            using var doc = JsonDocument.Parse(body);
            if (!doc.RootElement.TryGetProperty("fop_errors", out var errors) || errors.ValueKind != JsonValueKind.Array) return null;
            long sum = 0;
            foreach (var e in errors.EnumerateArray()) sum += e.GetInt64();
            return sum;
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException or IOException or JsonException)
        {
            return null;
        }
    }
}
