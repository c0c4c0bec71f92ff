using System.Diagnostics;
using System.Text.Json;
using Nydus.Actors.Tests.Support;
using Nydus.Actors.Tests.Upgrade;
using Xunit;
using Xunit.Abstractions;
using static Nydus.Actors.Tests.Agent.FleetCluster;

namespace Nydus.Actors.Tests.Agent;

/// <summary>
/// Node agents as one fleet (nydus.agent.cluster): three real `nydusd agent` processes, each in its own network
/// namespace on a bridged private network, each with a daemon serving a mounted image under verifying readers. They
/// form an Akka.Cluster and any agent's `ctl fleet status` lists every node's daemon; a node cut off (link down) is
/// removed by the split-brain resolver while its daemon keeps serving, and joins again (a new cluster node) once its
/// link is back; an agent stopped with SIGTERM leaves the cluster while its daemon keeps serving.
/// </summary>
[Collection("upgrade")]
public sealed class FleetTests(ITestOutputHelper output)
{
    [FuseFact]
    public async Task Three_agents_in_network_namespaces_form_a_fleet_survive_a_partition_and_a_graceful_leave()
    {
        using var network = NamespaceNetwork.Create(3);
        var rigs = new List<AgentRig>();
        var readers = new List<TreeReaders>();
        try
        {
            for (int i = 0; i < 3; i++) rigs.Add(await AgentRig.StartInNetworkNamespaceAsync(network.Nodes[i], Hocon(i)));
            foreach (var rig in rigs)
            {
                var r = new TreeReaders(rig.Tree, 2);
                readers.Add(r);
                r.Start();
            }
            var pids = new List<int>();
            foreach (var rig in rigs) pids.Add((await rig.DaemonAsync()).GetProperty("pid").GetInt32());

            // 1. One fleet: every agent sees all three nodes up, each with its running daemon.
            var formed = Stopwatch.StartNew();
            foreach (var rig in rigs)
                await WaitForFleetAsync(rig, view => Enumerable.Range(0, 3).All(i => IsServing(view, i, pids[i])), "all three nodes up with their daemons");
            output.WriteLine($"fleet formed and published in {formed.Elapsed.TotalSeconds:F1} s");
            for (int i = 0; i < 3; i++)
            {
                var (code, stdout, stderr) = await NydusdProcess.RunRawAsync(TimeSpan.FromSeconds(60), "ctl", "-S", rigs[i].Socket, "fleet", "status");
                Assert.True(code == 0, $"ctl fleet status on node {i} exited {code}: {stderr}");
                if (i == 0) output.WriteLine(stdout);
                for (int n = 0; n < 3; n++)
                {
                    var line = stdout.Split('\n').First(l => l.StartsWith(AddressOf(n), StringComparison.Ordinal));
                    Assert.Contains("  up  ", line);
                    Assert.Contains($"  d1  pid {pids[n]}  running  ", stdout);
                }
            }
            foreach (var r in readers) await r.AdvanceAsync(50, AgentRig.Wait);

            // 2. Node 2 cut off: the majority removes it (keep-majority), node 2 downs itself and restarts its cluster
            // node; its daemon serves all along.
            var cut = Stopwatch.StartNew();
            network.SetLink(2, up: false);
            var sawUnreachable = false;
            await WaitForFleetAsync(rigs[0], view =>
            {
                var node = Node(view, 2);
                sawUnreachable |= node is { } n && !n.GetProperty("reachable").GetBoolean();
                return node is { } m && m.GetProperty("member_status").GetString() == "absent" && m.GetProperty("stale").GetBoolean();
            }, "node 2 removed");
            var removed = cut.Elapsed;
            await WaitForOutputAsync(rigs[2], "Fleet: this node's cluster system ended", "node 2 downing itself");
            var downed = cut.Elapsed;
            // The cut-off node's entry is still listed (its last report, marked stale): what ran there before.
            var seen = Node(await FleetAsync(rigs[1]), 2)!.Value;
            Assert.Equal(pids[2], seen.GetProperty("daemons")[0].GetProperty("pid").GetInt32());
            await readers[2].AdvanceAsync(100, AgentRig.Wait);
            Assert.Equal("running", (await rigs[2].DaemonAsync()).GetProperty("state").GetString());
            output.WriteLine($"partition of node 2: removed by the others after {removed.TotalSeconds:F1} s (unreachable seen: {sawUnreachable}), "
                             + $"downed itself after {downed.TotalSeconds:F1} s; its daemon kept serving");

            // 3. Link back: node 2's new cluster node joins, and every agent lists it up and fresh again.
            var healed = Stopwatch.StartNew();
            network.SetLink(2, up: true);
            foreach (var rig in rigs)
                await WaitForFleetAsync(rig, view => Enumerable.Range(0, 3).All(i => IsServing(view, i, pids[i])), "node 2 back in the fleet");
            Assert.Contains("incarnation 2", rigs[2].Agent.Output);
            output.WriteLine($"node 2 rejoined {healed.Elapsed.TotalSeconds:F1} s after its link came back");

            // 4. SIGTERM of node 1's agent: it leaves gracefully; its daemon keeps serving without it.
            rigs[1].Agent.Signal(NydusdProcess.SIGTERM);
            Assert.Equal(0, await rigs[1].Agent.WaitForExitAsync(AgentRig.Wait));
            Assert.Contains("Fleet: leaving the cluster", rigs[1].Agent.Output);
            await WaitForFleetAsync(rigs[0], view => Node(view, 1) is { } n && n.GetProperty("member_status").GetString() == "absent",
                "node 1 gone after its leave");
            Assert.True(Directory.Exists($"/proc/{pids[1]}"), "node 1's daemon ended with its agent");
            await readers[1].AdvanceAsync(100, AgentRig.Wait);

            foreach (var r in readers) await r.AdvanceAsync(50, AgentRig.Wait);
            for (int i = 0; i < 3; i++)
            {
                Assert.True(readers[i].Stop(AgentRig.Wait), $"a reader of node {i} is still blocked");
                output.WriteLine($"node {i}: {readers[i].Operations} reader operations, {readers[i].FailureCount} failed; "
                                 + $"longest {readers[i].Longest.TotalMilliseconds:F0} ms ({readers[i].LongestWhat})");
                Assert.True(readers[i].FailureCount == 0, string.Join("\n", readers[i].Failures.Take(20)));
            }
        }
        finally
        {
            foreach (var r in readers) r.Dispose();
            foreach (var rig in rigs) await rig.DisposeAsync();
        }
    }

    [FuseFact]
    public async Task Agents_with_TLS_form_a_fleet_and_an_agent_without_it_cannot_join()
    {
        using var network = NamespaceNetwork.Create(3);
        using var dir = new TempDir("fleettls");
        // A self-signed certificate made for the test (PKCS#12, as Akka.Remote's DotNetty transport reads it); self-signed,
        // so validation is suppressed: what is shown is that the agents talk TLS, not a PKI.
        var key = dir.Combine("key.pem");
        var cert = dir.Combine("cert.pem");
        var pfx = dir.Combine("fleet.pfx");
        await RunAsync("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=nydus-fleet-test");
        await RunAsync("openssl", "pkcs12", "-export", "-out", pfx, "-inkey", key, "-in", cert, "-passout", "pass:fleet-test");
        var tls = $$"""
            akka.remote.dot-netty.tcp {
              enable-ssl = true
              ssl { suppress-validation = true, certificate { path = "{{pfx}}", password = "fleet-test" } }
            }
            """;
        var rigs = new List<AgentRig>();
        try
        {
            for (int i = 0; i < 2; i++) rigs.Add(await AgentRig.StartInNetworkNamespaceAsync(network.Nodes[i], Hocon(i, tls)));
            var pids = new List<int>();
            foreach (var rig in rigs) pids.Add((await rig.DaemonAsync()).GetProperty("pid").GetInt32());
            foreach (var rig in rigs)
                await WaitForFleetAsync(rig, view => IsServing(view, 0, pids[0]) && IsServing(view, 1, pids[1]), "both TLS agents up with their daemons");

            // An agent with plain TCP: the TLS agents cannot make sense of it, so it never becomes a member.
            rigs.Add(await AgentRig.StartInNetworkNamespaceAsync(network.Nodes[2], Hocon(2)));
            var watch = Stopwatch.StartNew();
            while (watch.Elapsed < TimeSpan.FromSeconds(40))
            {
                Assert.Null(Node(await FleetAsync(rigs[0]), 2));
                Assert.NotEqual("up", (await FleetAsync(rigs[2])).GetProperty("self_status").GetString());
                await Task.Delay(1000);
            }
            output.WriteLine($"two agents formed a fleet over TLS; the plain agent was still outside after {watch.Elapsed.TotalSeconds:F0} s");
        }
        finally
        {
            foreach (var rig in rigs) await rig.DisposeAsync();
        }
    }

    private static async Task RunAsync(string file, params string[] args)
    {
        var info = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) info.ArgumentList.Add(a);
        using var process = Process.Start(info)!;
        var stderr = process.StandardError.ReadToEndAsync();
        await process.StandardOutput.ReadToEndAsync();
        await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(60));
        Assert.True(process.ExitCode == 0, $"{file} {string.Join(' ', args)} exited {process.ExitCode}: {await stderr}");
    }

    [FuseFact]
    public async Task A_standalone_agent_answers_the_fleet_view_with_its_own_daemons()
    {
        await using var rig = await AgentRig.StartAsync(hotStandby: false);
        var pid = (await rig.DaemonAsync()).GetProperty("pid").GetInt32();
        var view = await FleetAsync(rig);
        Assert.False(view.GetProperty("clustered").GetBoolean());
        var node = Assert.Single(view.GetProperty("nodes").EnumerateArray());
        Assert.Equal("standalone", node.GetProperty("member_status").GetString());
        Assert.Equal(pid, node.GetProperty("daemons")[0].GetProperty("pid").GetInt32());
        var (code, stdout, _) = await NydusdProcess.RunRawAsync(TimeSpan.FromSeconds(60), "ctl", "-S", rig.Socket, "fleet", "status");
        Assert.Equal(0, code);
        Assert.Contains("not in a fleet", stdout);
        Assert.Contains($"d1  pid {pid}  running", stdout);
        // A single agent never loads the cluster.
        Assert.DoesNotContain("Fleet:", rig.Agent.Output);
        Assert.DoesNotContain(File.ReadLines($"/proc/{rig.Agent.Pid}/maps"), l => l.Contains("Akka.Remote.dll") || l.Contains("Akka.Cluster.dll"));
    }

    [Theory]
    [InlineData("enabled = on, seed-nodes = [\"10.0.0.1:4053\"]", "nydus.agent.cluster.hostname is required")]
    [InlineData("enabled = on, hostname = \"10.0.0.1\"", "nydus.agent.cluster.seed-nodes is empty")]
    [InlineData("enabled = on, hostname = \"10.0.0.1\", seed-nodes = [\"10.0.0.1\"]", "'10.0.0.1' is not host:port")]
    [InlineData("enabled = on, hostname = \"10.0.0.1\", seed-nodes = [\"akka.tcp://other@10.0.0.1:4053\"]", "the fleet's is 'nydus-fleet'")]
    [InlineData("enabled = on, hostname = \"10.0.0.1\", seed-nodes = [\"akka.ssl.tcp://nydus-fleet@10.0.0.1:4053\"]", "this agent's transport speaks akka.tcp (TLS off)")]
    public async Task An_agent_with_a_bad_cluster_block_refuses_to_start_naming_the_key(string block, string expected)
    {
        using var dir = new TempDir("fleetcfg");
        var hocon = dir.Combine("agent.conf");
        await File.WriteAllTextAsync(hocon, "nydus.agent.cluster { " + block + " }");
        var (code, outputText) = await NydusdProcess.RunAsync(TimeSpan.FromSeconds(60), "--hocon", hocon, "agent",
            "--state-dir", dir.Combine("state"), "--sock", dir.Combine("agent.sock"));
        Assert.Equal(1, code);
        Assert.Contains(expected, outputText);
        Assert.False(Directory.Exists(dir.Combine("state")), "a failed start left its state dir");
    }
}
