using System.Diagnostics;

namespace Nydus.Actors.Tests.Support;

/// <summary>
/// A private network of network namespaces for multi-node tests: a hub namespace with a bridge, and one namespace
/// per node joined to it by a veth pair, the node's end addressed 10.77.0.(i+1)/24. Names are unique per run (so runs
/// never meet), and disposing deletes every namespace it made (their veths go with them), even after a failed set-up.
/// A node's link can be set down and up again (a partition of that node).
/// </summary>
public sealed class NamespaceNetwork : IDisposable
{
    private static readonly TimeSpan CommandTimeout = TimeSpan.FromSeconds(30);
    private readonly string _run = Guid.NewGuid().ToString("N")[..6];
    private readonly List<string> _created = [];

    private NamespaceNetwork()
    {
    }

    public string Hub => $"nyf-{_run}-hub";
    public IReadOnlyList<string> Nodes { get; private set; } = [];

    public static string AddressOf(int node) => $"10.77.0.{node + 1}";

    /// <summary>The node's end of its veth pair (in the node's namespace). Interface names are at most 15 characters.</summary>
    private string NodeLink(int node) => $"nyf{_run}n{node}";

    private string HubLink(int node) => $"nyf{_run}h{node}";

    public static NamespaceNetwork Create(int nodes)
    {
        var network = new NamespaceNetwork();
        try
        {
            network.AddNamespace(network.Hub);
            network.Ip("-n", network.Hub, "link", "add", "br0", "type", "bridge");
            network.Ip("-n", network.Hub, "link", "set", "br0", "up");
            var names = new List<string>();
            for (int i = 0; i < nodes; i++)
            {
                var name = $"nyf-{network._run}-n{i}";
                network.AddNamespace(name);
                names.Add(name);
                network.Ip("link", "add", network.NodeLink(i), "netns", name, "type", "veth", "peer", "name", network.HubLink(i), "netns", network.Hub);
                network.Ip("-n", network.Hub, "link", "set", network.HubLink(i), "master", "br0");
                network.Ip("-n", network.Hub, "link", "set", network.HubLink(i), "up");
                network.Ip("-n", name, "addr", "add", AddressOf(i) + "/24", "dev", network.NodeLink(i));
                network.Ip("-n", name, "link", "set", network.NodeLink(i), "up");
                network.Ip("-n", name, "link", "set", "lo", "up");
            }
            network.Nodes = names;
            return network;
        }
        catch
        {
            network.Dispose();
            throw;
        }
    }

    /// <summary>Cuts node <paramref name="node"/> off (its link down, inside its namespace) or connects it again.</summary>
    public void SetLink(int node, bool up) => Ip("-n", Nodes[node], "link", "set", NodeLink(node), up ? "up" : "down");

    private void AddNamespace(string name)
    {
        Ip("netns", "add", name);
        _created.Add(name);
    }

    private void Ip(params string[] args)
    {
        var info = new ProcessStartInfo("ip") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) info.ArgumentList.Add(a);
        using var process = Process.Start(info)!;
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(CommandTimeout))
        {
            process.Kill();
            throw new TimeoutException($"ip {string.Join(' ', args)} did not finish within {CommandTimeout}");
        }
        if (process.ExitCode != 0)
            throw new InvalidOperationException($"ip {string.Join(' ', args)} failed ({process.ExitCode}): {stderr.Result.Trim()}");
    }

    public void Dispose()
    {
        // Node namespaces first, then the hub; a failure to delete one does not keep the others.
        for (int i = _created.Count - 1; i >= 0; i--)
        {
            try { Ip("netns", "del", _created[i]); }
            catch (InvalidOperationException) { }
            catch (TimeoutException) { }
        }
        _created.Clear();
    }
}
