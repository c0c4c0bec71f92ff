using System.Diagnostics;
using System.Text.Json;
using Nydus.Actors.Tests.Support;

namespace Nydus.Actors.Tests.Agent;

/// <summary>
/// The fleet of the multi-agent tests and of the fleet bench (Nydus.Bench links this file): node i's agent listens on
/// <see cref="NamespaceNetwork.AddressOf"/>(i):<see cref="Port"/> inside its namespace, every agent lists all three
/// as seeds; and the polls of an agent's fleet view (<c>GET /api/v1/fleet</c>), each bounded by <see cref="FleetWait"/>.
/// </summary>
public static class FleetCluster
{
    public const int Port = 4053;
    public static readonly TimeSpan FleetWait = TimeSpan.FromSeconds(120);

    public static string AddressOf(int node) => $"akka.tcp://nydus-fleet@{NamespaceNetwork.AddressOf(node)}:{Port}";

    /// <summary>Every agent lists all three nodes as seeds; short timings so a partition resolves within the test.</summary>
    public static string Hocon(int node, string extra = "") => $$"""
        nydus.agent.cluster {
          enabled = on
          hostname = "{{NamespaceNetwork.AddressOf(node)}}"
          port = {{Port}}
          seed-nodes = ["{{NamespaceNetwork.AddressOf(0)}}:{{Port}}", "{{NamespaceNetwork.AddressOf(1)}}:{{Port}}", "{{NamespaceNetwork.AddressOf(2)}}:{{Port}}"]
          roles = ["node-{{node}}"]
          publish-interval = 1s
          restart-delay = 2s
        }
        akka.cluster.split-brain-resolver.stable-after = 5s
        {{extra}}
        """;

    public static bool IsServing(JsonElement view, int node, int pid) =>
        Node(view, node) is { } n && n.GetProperty("member_status").GetString() == "up" && n.GetProperty("reachable").GetBoolean()
        && !n.GetProperty("stale").GetBoolean()
        && n.GetProperty("daemons").EnumerateArray().Any(d => d.GetProperty("pid").GetInt32() == pid && d.GetProperty("healthy").GetBoolean());

    /// <summary>The address is node's, over plain TCP (akka.tcp) or TLS (akka.ssl.tcp).</summary>
    private static bool SameNode(string address, int node) =>
        address == AddressOf(node) || address == AddressOf(node).Replace("akka.tcp://", "akka.ssl.tcp://", StringComparison.Ordinal);

    public static JsonElement? Node(JsonElement view, int node)
    {
        foreach (var n in view.GetProperty("nodes").EnumerateArray())
            if (n.GetProperty("address").GetString() is { } address && SameNode(address, node)) return n;
        return null;
    }

    public static async Task<JsonElement> FleetAsync(AgentRig rig)
    {
        var (status, body) = await rig.SendAsync("GET", "/api/v1/fleet");
        if (status != 200) throw new InvalidOperationException($"GET /api/v1/fleet answered {status}: {body}");
        return JsonDocument.Parse(body).RootElement.Clone();
    }

    public static async Task<JsonElement> WaitForFleetAsync(AgentRig rig, Func<JsonElement, bool> condition, string what)
    {
        var deadline = Stopwatch.StartNew();
        JsonElement last = default;
        while (deadline.Elapsed < FleetWait)
        {
            last = await FleetAsync(rig);
            if (condition(last)) return last;
            await Task.Delay(250);
        }
        throw new TimeoutException($"{what}: not seen by {rig.Socket} within {FleetWait}; last view {last}\n{rig.Agent.Output}");
    }

    public static async Task WaitForOutputAsync(AgentRig rig, string text, string what)
    {
        var deadline = Stopwatch.StartNew();
        while (!rig.Agent.Output.Contains(text, StringComparison.Ordinal))
        {
            if (deadline.Elapsed > FleetWait) throw new TimeoutException($"{what}: '{text}' not logged within {FleetWait}\n{rig.Agent.Output}");
            await Task.Delay(250);
        }
    }
}
