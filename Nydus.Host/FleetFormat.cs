using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Nydus.Host;

/// <summary>`nydusd ctl fleet status`: the fleet view (GET /api/v1/fleet) as one line per node and one per daemon.</summary>
public static class FleetFormat
{
    public static string Status(JsonElement view)
    {
        var text = new StringBuilder();
        var nodes = view.GetProperty("nodes").EnumerateArray().ToList();
        if (!view.GetProperty("clustered").GetBoolean())
            text.AppendLine("This agent is not in a fleet (nydus.agent.cluster.enabled = off); its own daemons:");
        else
            text.AppendLine($"Fleet seen from {view.GetProperty("self").GetString()} ({view.GetProperty("self_status").GetString()}), "
                            + $"leader {(view.GetProperty("leader").GetString() ?? "none")}: {nodes.Count} nodes");
        foreach (var node in nodes)
        {
            var age = node.GetProperty("age_seconds").GetDouble();
            var daemons = node.GetProperty("daemons").EnumerateArray().ToList();
            text.Append(CultureInfo.InvariantCulture,
                $"{node.GetProperty("address").GetString()}  {node.GetProperty("member_status").GetString()}");
            if (!node.GetProperty("reachable").GetBoolean() && node.GetProperty("member_status").GetString() != "absent") text.Append(" unreachable");
            text.Append(age < 0 ? "  never published" : string.Create(CultureInfo.InvariantCulture, $"  published {age:F1}s ago"));
            if (node.GetProperty("stale").GetBoolean()) text.Append(" (stale)");
            text.Append(CultureInfo.InvariantCulture, $"  {daemons.Count} daemon(s)");
            if (node.GetProperty("agent_version").GetString() is { Length: > 0 } version) text.Append("  agent ").Append(version);
            text.AppendLine();
            foreach (var d in daemons)
            {
                text.AppendLine(string.Create(CultureInfo.InvariantCulture,
                    $"  {d.GetProperty("id").GetString()}  pid {d.GetProperty("pid").GetInt32()}  {d.GetProperty("state").GetString()}"
                    + $"{(d.GetProperty("healthy").GetBoolean() ? "" : " (unhealthy)")}  failovers {d.GetProperty("failovers").GetInt32()}"
                    + $"{(d.GetProperty("standby").GetBoolean() ? "  standby" : "")}  {d.GetProperty("mountpoint").GetString()}"));
            }
        }
        return text.ToString();
    }

    /// <summary>`nydusd ctl fleet events`: one line per event, oldest first.</summary>
    public static string Events(JsonElement body)
    {
        var text = new StringBuilder();
        var events = body.GetProperty("events").EnumerateArray().ToList();
        text.AppendLine(CultureInfo.InvariantCulture,
            $"{events.Count} of {body.GetProperty("total_events").GetInt64()} fleet events (at most {body.GetProperty("max_events").GetInt32()} kept)");
        foreach (var e in events)
            text.AppendLine(CultureInfo.InvariantCulture,
                $"{e.GetProperty("time").GetDateTimeOffset():yyyy-MM-dd HH:mm:ss.fff}  {e.GetProperty("kind").GetString()}  {e.GetProperty("message").GetString()}");
        return text.ToString();
    }

    /// <summary>`nydusd ctl fleet rollout` (and the answers of upgrade, pause, resume, abort): the rollout, then one
    /// line per daemon.</summary>
    public static string Rollout(JsonElement rollout)
    {
        var text = new StringBuilder();
        var targets = rollout.GetProperty("targets").EnumerateArray().ToList();
        int Count(string state) => targets.Count(t => t.GetProperty("state").GetString() == state);
        text.AppendLine(CultureInfo.InvariantCulture,
            $"Rollout {rollout.GetProperty("id").GetString()}  {rollout.GetProperty("state").GetString()}  to {rollout.GetProperty("binary").GetString()}");
        text.AppendLine(CultureInfo.InvariantCulture,
            $"  {Count("done")} of {targets.Count} daemons done, {Count("upgrading")} upgrading, {Count("pending")} pending, {Count("failed")} failed, "
            + $"{Count("skipped")} skipped; batch {rollout.GetProperty("batch").GetInt32()}, max unavailable {rollout.GetProperty("max_unavailable").GetInt32()}, "
            + $"pause on failure {(rollout.GetProperty("pause_on_failure").GetBoolean() ? "yes" : "no")}; coordinator {rollout.GetProperty("coordinator").GetString()}");
        if (rollout.GetProperty("message").GetString() is { Length: > 0 } message) text.AppendLine("  " + message);
        foreach (var t in targets)
        {
            text.Append(CultureInfo.InvariantCulture,
                $"  {t.GetProperty("daemon").GetString()}@{t.GetProperty("node").GetString()}  {t.GetProperty("state").GetString()}");
            if (t.GetProperty("new_pid").GetInt32() is > 0 and var pid) text.Append(CultureInfo.InvariantCulture, $"  pid {t.GetProperty("old_pid").GetInt32()} -> {pid}");
            if (t.GetProperty("message").GetString() is { Length: > 0 } m) text.Append("  ").Append(m);
            text.AppendLine();
        }
        return text.ToString();
    }
}
