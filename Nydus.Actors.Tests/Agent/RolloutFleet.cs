using Nydus.Actors.Tests.Support;
using Nydus.Actors.Tests.Upgrade;

namespace Nydus.Actors.Tests.Agent;

/// <summary>
/// Three agents in network namespaces (node 0 first, so it is the oldest member), each with its daemons serving
/// generated trees under verifying readers, every agent listing all three nodes serving. Disposing stops the readers,
/// the agents and everything they started, and removes the namespaces, whatever the test did. Used by the rollout
/// tests and by the fleet bench (Nydus.Bench links this file).
/// </summary>
public sealed class RolloutFleet : IAsyncDisposable
{
    public NamespaceNetwork Network { get; } = NamespaceNetwork.Create(3);
    public TempDir Dir { get; } = new("rollout");
    public List<AgentRig> Rigs { get; } = [];
    public List<TreeReaders> Readers { get; } = [];
    public int[] Pids { get; } = new int[3];

    /// <summary>Every agent's daemons beyond d1 (<c>d2</c>, ...: <see cref="StartAsync"/>'s daemonsPerAgent).</summary>
    public List<string> MoreDaemons { get; } = [];

    /// <param name="hocon">Node i's agent's HOCON (<see cref="FleetCluster.Hocon"/> and more: its journal elsewhere, say).</param>
    /// <param name="daemonsPerAgent">Daemons each agent manages, each serving its own tree under a verifying reader.</param>
    /// <param name="readersOfFirst">Reader threads on each agent's d1 (the others get one each). Readers come first in
    /// <see cref="Readers"/>, one set per node for d1, then node by node for the others.</param>
    public static async Task<RolloutFleet> StartAsync(Func<int, string> hocon, int daemonsPerAgent = 1, int readersOfFirst = 2)
    {
        var fleet = new RolloutFleet();
        try
        {
            for (int i = 0; i < 3; i++)
            {
                fleet.Rigs.Add(await AgentRig.StartInNetworkNamespaceAsync(fleet.Network.Nodes[i], hocon(i)));
                if (i == 0) await FleetCluster.WaitForFleetAsync(fleet.Rigs[0], v => v.GetProperty("self_status").GetString() == "up", "node 0 up");
            }
            foreach (var rig in fleet.Rigs)
            {
                var r = new TreeReaders(rig.Tree, readersOfFirst);
                fleet.Readers.Add(r);
                r.Start();
            }
            fleet.MoreDaemons.AddRange(Enumerable.Range(2, daemonsPerAgent - 1).Select(n => $"d{n}"));
            foreach (var rig in fleet.Rigs)
            {
                foreach (var id in fleet.MoreDaemons)
                {
                    var r = new TreeReaders(await rig.AddDaemonAsync(id), 1);
                    fleet.Readers.Add(r);
                    r.Start();
                }
            }
            for (int i = 0; i < 3; i++) fleet.Pids[i] = (await fleet.Rigs[i].DaemonAsync()).GetProperty("pid").GetInt32();
            foreach (var rig in fleet.Rigs)
                await FleetCluster.WaitForFleetAsync(rig, view => Enumerable.Range(0, 3).All(i => FleetCluster.IsServing(view, i, fleet.Pids[i])),
                    "all three nodes serving");
            return fleet;
        }
        catch
        {
            await fleet.DisposeAsync();
            throw;
        }
    }

    /// <summary>A "new nydusd": a script that execs the test's nydusd (same pid), or fails at once when its arguments
    /// name <paramref name="failFor"/> (one host's state dir), as a binary that cannot start there.</summary>
    public static string WrapperBinary(TempDir dir, string name, string? failFor)
    {
        var path = dir.Combine(name);
        var fail = failFor is null ? "" : $"case \"$*\" in *'{failFor}'*) echo \"{name}: cannot start on this host\" >&2; exit 1;; esac\n";
        File.WriteAllText(path, $"#!/bin/sh\n{fail}exec '{NydusdProcess.BinaryPath}' \"$@\"\n");
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        return path;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var r in Readers) r.Dispose();
        foreach (var rig in Rigs) await rig.DisposeAsync();
        Dir.Dispose();
        Network.Dispose();
    }
}
