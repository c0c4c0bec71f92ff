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
}
