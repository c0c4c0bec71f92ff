using System.Diagnostics;
using System.Text.Json;
using Nydus.Actors.Tests.Support;
using Nydus.Actors.Tests.Upgrade;
using Xunit;
using Xunit.Abstractions;

namespace Nydus.Actors.Tests.Agent;

/// <summary>
/// Rolling upgrades of a fleet (`nydusd ctl fleet upgrade`): three real agent processes, each in its own network
/// namespace (<see cref="FleetTests"/>), each with a daemon serving a mounted image under verifying readers. The
/// coordinator is a cluster singleton; each daemon is upgraded by its own agent's live-upgrade path. Upgrades are
/// counted from each agent's spawn log (role "upgrade"), which records every process an agent starts.
/// </summary>
[Collection("upgrade")]
public sealed class FleetRolloutTests(ITestOutputHelper output)
{
    private static readonly TimeSpan RolloutWait = TimeSpan.FromSeconds(180);

    /// <summary>Short gates so a test sees them within its bounds; settle long enough that a step can be caught in flight.</summary>
    private static string Hocon(int node, bool rollouts = true, string extra = "") => FleetCluster.Hocon(node, $$"""
        nydus.agent.cluster.rollouts = {{(rollouts ? "on" : "off")}}
        nydus.agent.cluster.rollout { settle = 3s, gate-timeout = 150s, step-timeout = 120s }
        {{extra}}
        """);

    [FuseFact]
    public async Task A_rollout_upgrades_every_daemon_once_under_readers_and_resumes_elsewhere_when_the_coordinators_agent_is_killed()
    {
        await using var fleet = await StartFleetAsync([true, true, true]);
        var (dir, rigs, readers, pids) = (fleet.Dir, fleet.Rigs, fleet.Readers, fleet.Pids);
        var binary = RolloutFleet.WrapperBinary(dir, "nydusd-v2", failFor: null);

        // The coordinator runs on the oldest agent, node 0 (it founded the cluster); its own daemon comes last.
        var started = await StartRolloutAsync(rigs[1], binary, "--batch", "1", "--pause-on-failure");
        Assert.Contains("running", started);
        var watch = Stopwatch.StartNew();
        var first = await WaitForRolloutAsync(rigs[2], r => Coordinator(r) == FleetCluster.AddressOf(0), "the coordinator on node 0");
        Assert.Equal([FleetCluster.AddressOf(1), FleetCluster.AddressOf(2), FleetCluster.AddressOf(0)],
            first.GetProperty("targets").EnumerateArray().Select(t => t.GetProperty("node").GetString()!).ToArray());

        // SIGKILL node 0's agent while node 2's daemon is in its upgrade (or its health gate).
        await WaitForRolloutAsync(rigs[1], r => State(r, 1) == "upgrading", "node 2's daemon upgrading");
        rigs[0].Agent.Signal(NydusdProcess.SIGKILL);
        await rigs[0].Agent.WaitForExitAsync(AgentRig.Wait);
        output.WriteLine($"SIGKILLed node 0's agent (the coordinator's) {watch.Elapsed.TotalSeconds:F1} s into the rollout");

        // The singleton moves (node 0 is downed by the others after stable-after) and the rollout goes on there.
        var moved = await WaitForRolloutAsync(rigs[1], r => Coordinator(r) != FleetCluster.AddressOf(0) && State(r, 1) == "done",
            "the coordinator moved and node 2's daemon done");
        output.WriteLine($"coordinator moved to {Coordinator(moved)} after {watch.Elapsed.TotalSeconds:F1} s; node 2's daemon: "
                         + Target(moved, 1).GetProperty("message"));

        // Node 0's agent comes back on its state dir (its daemon served all along); the rollout finishes with it.
        await rigs[0].StartAgentAsync(hotStandby: false);
        var done = await WaitForRolloutAsync(rigs[2], r => r.GetProperty("state").GetString() is "completed" or "completed_with_failures" or "paused",
            "the rollout's end");
        output.WriteLine(await CtlAsync(rigs[2], "fleet", "rollout"));
        Assert.Equal("completed", done.GetProperty("state").GetString());
        output.WriteLine($"rollout of 3 daemons with the coordinator's agent killed and restarted: {watch.Elapsed.TotalSeconds:F1} s");

        for (int i = 0; i < 3; i++)
        {
            var daemon = await rigs[i].WaitForServingAsync(failovers: 0, standby: false);
            Assert.Equal(binary, daemon.GetProperty("binary").GetString());
            Assert.NotEqual(pids[i], daemon.GetProperty("pid").GetInt32());
            Assert.Equal(1, UpgradesOf(rigs[i]));
        }

        // The fleet's events and Prometheus page on node 1 (up throughout): each daemon upgraded once, the coordinator
        // moved, node 0 unreachable and removed, then up again; the rollout's counts and every host up and healthy.
        var id = done.GetProperty("id").GetString()!;
        var events = await WaitForEventsAsync(rigs[1], e => e.Any(x => x.Kind == "rollout_state" && x.Message.StartsWith($"rollout {id} completed")),
            "the rollout's completion");
        output.WriteLine(await CtlAsync(rigs[1], "fleet", "events"));
        for (int i = 0; i < 3; i++) Assert.Single(events, e => e.Kind == "daemon_upgraded" && e.Rollout == id && e.Node == FleetCluster.AddressOf(i));
        Assert.Single(events, e => e.Kind == "rollout_started" && e.Rollout == id);
        Assert.Contains(events, e => e.Kind == "coordinator_moved" && e.Rollout == id);
        Assert.Contains(events, e => e.Kind == "member_unreachable" && e.Node == FleetCluster.AddressOf(0));
        var removed = events.FindIndex(e => e.Kind == "member_removed" && e.Node == FleetCluster.AddressOf(0));
        Assert.True(removed >= 0, "node 0's removal is not among node 1's events");
        Assert.Contains(events.Skip(removed), e => e.Kind == "member_up" && e.Node == FleetCluster.AddressOf(0));
        var page = await WaitForMetricsAsync(rigs[1], p => Enumerable.Range(0, 3).All(i =>
                MetricValue(p, $"nydus_fleet_node_up{{node=\"{FleetCluster.AddressOf(i)}\"}}") == 1
                && MetricValue(p, $"nydus_fleet_node_daemons_healthy{{node=\"{FleetCluster.AddressOf(i)}\"}}") == 1),
            "every host up with its daemon healthy");
        Assert.Equal(1, MetricValue(page, "nydus_fleet_clustered"));
        Assert.Equal(1, MetricValue(page, $"nydus_fleet_rollout_state{{rollout=\"{id}\",state=\"completed\"}}"));
        Assert.Equal(0, MetricValue(page, $"nydus_fleet_rollout_state{{rollout=\"{id}\",state=\"running\"}}"));
        Assert.Equal(3, MetricValue(page, $"nydus_fleet_rollout_daemons{{rollout=\"{id}\",state=\"done\"}}"));
        Assert.Equal(0, MetricValue(page, $"nydus_fleet_rollout_daemons{{rollout=\"{id}\",state=\"failed\"}}"));
        Assert.True(MetricValue(page, "nydus_fleet_events_total") >= events.Count);
        await CheckReadersAsync(readers);
    }

    [FuseTheory]
    [InlineData("sqlite")]
    [InlineData("postgresql")]
    public async Task A_paused_rollout_survives_every_agent_restarting_and_resumes_without_upgrading_a_daemon_twice(string journal)
    {
        // The agents' journals (where each records the rollout it saw) in their state dirs, or all in one PostgreSQL.
        using var postgres = journal == "postgresql" ? PostgresServer.Start() : null;
        // Three agents recovering at once on this shared machine (load 60-80 seen): their journals get minutes, not 30 s.
        const string slowRecovery = """
            akka.persistence.journal.sql.recovery-event-timeout = 180s
            nydus.journal.recovery-timeout = 180s
            """;
        string Journal(int node) => slowRecovery + "\n" + (postgres is null ? "" : $$"""
            akka.persistence.journal.sql { provider-name = "PostgreSQL.15", connection-string = "{{postgres.ConnectionString}}" }
            akka.persistence.snapshot-store.sql { provider-name = "PostgreSQL.15", connection-string = "{{postgres.ConnectionString}}" }
            nydus.agent.persistence-id = "nydusd-agent-node{{node}}"
            """);
        // Two daemons per agent (each under a verifying reader), upgraded two at a time.
        await using var fleet = await StartFleetAsync([true, true, true], Journal, daemonsPerAgent: 2);
        var (dir, rigs, readers, pids) = (fleet.Dir, fleet.Rigs, fleet.Readers, fleet.Pids);
        var binary = RolloutFleet.WrapperBinary(dir, "nydusd-v2", failFor: null);

        // Paused once a daemon of node 1 (the first batch) is done; whatever was in progress then finishes.
        await StartRolloutAsync(rigs[0], binary, "--pause-on-failure", "--batch", "2");
        await WaitForRolloutAsync(rigs[0], r => State(r, 0) == "done" || State(r, 1) == "done", "a daemon of node 1 done");
        // Through the API, asked again while the coordinator is slow to answer (a ctl process took over 60 s at load 107).
        await ControlAsync(rigs[0], "pause");
        var paused = await WaitForRolloutAsync(rigs[0], r => r.GetProperty("state").GetString() == "paused"
            && r.GetProperty("targets").EnumerateArray().All(t => t.GetProperty("state").GetString() != "upgrading"), "paused with nothing in progress");
        var id = paused.GetProperty("id").GetString()!;
        var doneBefore = paused.GetProperty("targets").EnumerateArray().Count(t => t.GetProperty("state").GetString() == "done");
        output.WriteLine(await CtlAsync(rigs[0], "fleet", "rollout"));
        // Every agent has recorded that state in its journal (its Prometheus page shows the rollout as it recorded it).
        var written = paused.GetProperty("updated_at_ms").GetInt64() / 1000.0;
        foreach (var rig in rigs)
            await WaitForMetricsAsync(rig, p => MetricValue(p, $"nydus_fleet_rollout_updated_timestamp_seconds{{rollout=\"{id}\"}}") is { } v
                                                && Math.Abs(v - written) < 0.0005, "the paused rollout recorded");

        // Every agent SIGKILLed at once (the replicated copy goes with them), their daemons serving on; then restarted.
        foreach (var rig in rigs) rig.Agent.Signal(NydusdProcess.SIGKILL);
        foreach (var rig in rigs) await rig.Agent.WaitForExitAsync(AgentRig.Wait);
        foreach (var r in readers) await r.AdvanceAsync(50, AgentRig.Wait);
        var watch = Stopwatch.StartNew();
        for (int i = 0; i < 3; i++)
        {
            await rigs[i].StartAgentAsync(hotStandby: false, TimeSpan.FromMinutes(4));
            if (i == 0) await FleetCluster.WaitForFleetAsync(rigs[0], v => v.GetProperty("self_status").GetString() == "up", "node 0 up");
        }
        var back = await WaitForRolloutAsync(rigs[2], r => r.GetProperty("id").GetString() == id, "the rollout read back from the agents' journals");
        output.WriteLine($"rollout {id} back {watch.Elapsed.TotalSeconds:F1} s after the agents restarted ({journal} journals):");
        output.WriteLine(await CtlAsync(rigs[2], "fleet", "rollout"));
        Assert.Equal("paused", back.GetProperty("state").GetString());
        Assert.Equal(doneBefore, back.GetProperty("targets").EnumerateArray().Count(t => t.GetProperty("state").GetString() == "done"));

        Assert.Contains("running", await ControlAsync(rigs[1], "resume"));
        var done = await WaitForRolloutAsync(rigs[1], r => r.GetProperty("state").GetString() != "running", "the rollout's end");
        output.WriteLine(await CtlAsync(rigs[1], "fleet", "rollout"));
        Assert.Equal("completed", done.GetProperty("state").GetString());
        Assert.Equal(id, done.GetProperty("id").GetString());
        for (int i = 0; i < 3; i++)
        {
            var daemon = await rigs[i].WaitForServingAsync(failovers: 0, standby: false);
            Assert.Equal(binary, daemon.GetProperty("binary").GetString());
            Assert.NotEqual(pids[i], daemon.GetProperty("pid").GetInt32());
            Assert.Equal(1, UpgradesOf(rigs[i]));
            foreach (var id2 in fleet.MoreDaemons)
            {
                Assert.Equal(binary, (await rigs[i].DaemonAsync(id2)).GetProperty("binary").GetString());
                Assert.Equal(1, UpgradesOf(rigs[i], id2));
            }
        }
        Assert.Equal(6, done.GetProperty("targets").GetArrayLength());
        if (postgres is not null)
        {
            for (int i = 0; i < 3; i++)
            {
                Assert.True(int.Parse(postgres.Query($"select count(*) from journal where persistence_id = 'nydusd-agent-node{i}'")) > 0,
                    $"node {i}'s agent wrote nothing to PostgreSQL");
                Assert.False(File.Exists(Path.Combine(rigs[i].StateDir, "journal.db")), $"node {i}'s agent made a SQLite journal");
            }
        }
        await CheckReadersAsync(readers);
    }

    [FuseFact]
    public async Task A_bad_binary_pauses_a_second_rollout_is_refused_and_an_older_agent_pauses_or_is_skipped()
    {
        await using var fleet = await StartFleetAsync([true, true, false]);
        // Node 2 runs with rollouts off: to the coordinator, an agent of a version before rollouts.
        var (dir, rigs, readers, pids) = (fleet.Dir, fleet.Rigs, fleet.Readers, fleet.Pids);
        // Fails to start on node 1 only (its state dir is in the daemon's arguments), works elsewhere.
        var bad = RolloutFleet.WrapperBinary(dir, "nydusd-bad", failFor: rigs[1].StateDir);

        // Two rollouts at once, through two agents: one starts, the other is refused with the first one named.
        var both = await Task.WhenAll(
            rigs[0].SendAsync("POST", "/api/v1/fleet/rollout", JsonSerializer.Serialize(new { binary = bad, pause_on_failure = true })),
            rigs[1].SendAsync("POST", "/api/v1/fleet/rollout", JsonSerializer.Serialize(new { binary = bad, pause_on_failure = true })));
        Assert.Single(both, b => b.Status == 201);
        var refused = Assert.Single(both, b => b.Status != 201);
        output.WriteLine($"second rollout: {refused.Status} {refused.Body}");
        Assert.Equal(409, refused.Status);
        Assert.Contains("before starting another", refused.Body);

        // The bad binary fails on node 1: the rollout pauses there, node 1 keeps its old daemon serving.
        var paused = await WaitForRolloutAsync(rigs[0], r => r.GetProperty("state").GetString() == "paused", "paused at the bad binary");
        output.WriteLine(await CtlAsync(rigs[0], "fleet", "rollout"));
        Assert.Equal("failed", State(paused, 0));
        Assert.Contains("paused", paused.GetProperty("message").GetString());
        Assert.All(paused.GetProperty("targets").EnumerateArray().Skip(1), t => Assert.Equal("pending", t.GetProperty("state").GetString()));
        var kept = await rigs[1].WaitForServingAsync(failovers: 0, standby: false);
        Assert.Equal(pids[1], kept.GetProperty("pid").GetInt32());
        await readers[1].AdvanceAsync(50, AgentRig.Wait);

        // Abort; a good binary then: node 1 is upgraded, and the rollout pauses before node 2's older agent.
        Assert.Contains("aborted", await CtlAsync(rigs[1], "fleet", "abort"));
        var good = RolloutFleet.WrapperBinary(dir, "nydusd-v2", failFor: null);
        await StartRolloutAsync(rigs[0], good);
        var older = await WaitForRolloutAsync(rigs[0], r => r.GetProperty("state").GetString() == "paused", "paused before the older agent");
        output.WriteLine(await CtlAsync(rigs[0], "fleet", "rollout"));
        Assert.Equal("done", State(older, 0));
        Assert.Contains("does not take rollout requests", older.GetProperty("message").GetString());
        Assert.Equal(pids[2], (await rigs[2].DaemonAsync()).GetProperty("pid").GetInt32());

        // Abort, and again skipping older agents: node 2's daemon is skipped, the others end on the new binary.
        await CtlAsync(rigs[0], "fleet", "abort");
        await StartRolloutAsync(rigs[1], good, "--skip-older-agents", "--batch", "2");
        var done = await WaitForRolloutAsync(rigs[1], r => r.GetProperty("state").GetString() != "running", "the rollout's end");
        output.WriteLine(await CtlAsync(rigs[1], "fleet", "rollout"));
        Assert.Equal("completed", done.GetProperty("state").GetString());
        Assert.Equal("skipped", State(done, 1));
        Assert.Equal(good, (await rigs[0].WaitForServingAsync(0, false)).GetProperty("binary").GetString());
        Assert.Equal(good, (await rigs[1].WaitForServingAsync(0, false)).GetProperty("binary").GetString());
        Assert.Equal(pids[2], (await rigs[2].WaitForServingAsync(0, false)).GetProperty("pid").GetInt32());
        // Node 1: the failed try (its process never served) and two good ones (two rollouts); node 0 only the last one.
        Assert.Equal(3, UpgradesOf(rigs[1]));
        Assert.Equal(1, UpgradesOf(rigs[0]));
        Assert.Equal(0, UpgradesOf(rigs[2]));
        await CheckReadersAsync(readers);
    }

    [FuseFact]
    public async Task A_node_cut_off_during_a_rollout_is_waited_for_and_upgraded_once_its_link_is_back()
    {
        await using var fleet = await StartFleetAsync([true, true, true]);
        var (network, dir, rigs, readers, pids) = (fleet.Network, fleet.Dir, fleet.Rigs, fleet.Readers, fleet.Pids);
        var binary = RolloutFleet.WrapperBinary(dir, "nydusd-v2", failFor: null);
        await StartRolloutAsync(rigs[0], binary, "--pause-on-failure");
        // Node 2 (second in the order) loses its link while node 1's daemon is being upgraded.
        await WaitForRolloutAsync(rigs[0], r => State(r, 0) == "upgrading", "node 1's daemon upgrading");
        var watch = Stopwatch.StartNew();
        network.SetLink(2, up: false);
        var waiting = await WaitForRolloutAsync(rigs[0], r => State(r, 0) == "done" && r.GetProperty("message").GetString() is { } m
            && m.Contains(FleetCluster.AddressOf(2), StringComparison.Ordinal), "the rollout waiting for node 2");
        output.WriteLine($"{watch.Elapsed.TotalSeconds:F1} s after the cut: {waiting.GetProperty("message").GetString()}");
        Assert.Equal("running", waiting.GetProperty("state").GetString());
        Assert.Equal("pending", State(waiting, 1));
        // Cut off, node 2's daemon serves its readers; nothing was sent to it.
        await readers[2].AdvanceAsync(100, AgentRig.Wait);
        Assert.Equal(pids[2], (await rigs[2].DaemonAsync()).GetProperty("pid").GetInt32());
        await FleetCluster.WaitForFleetAsync(rigs[0], v => FleetCluster.Node(v, 2) is { } n && n.GetProperty("member_status").GetString() == "absent",
            "node 2 removed");

        network.SetLink(2, up: true);
        var done = await WaitForRolloutAsync(rigs[0], r => r.GetProperty("state").GetString() != "running", "the rollout's end");
        output.WriteLine(await CtlAsync(rigs[0], "fleet", "rollout"));
        output.WriteLine($"rollout with node 2 cut off and back: {watch.Elapsed.TotalSeconds:F1} s from the cut");
        Assert.Equal("completed", done.GetProperty("state").GetString());
        // Node 0's events: node 2 unreachable, removed, up again (its new cluster node), then its daemon upgraded.
        var node2 = FleetCluster.AddressOf(2);
        var events = await WaitForEventsAsync(rigs[0], e => e.Any(x => x.Kind == "daemon_upgraded" && x.Node == node2), "node 2's daemon upgraded");
        var unreachable = events.FindIndex(e => e.Kind == "member_unreachable" && e.Node == node2);
        var removed = events.FindIndex(e => e.Kind == "member_removed" && e.Node == node2);
        var upAgain = events.FindLastIndex(e => e.Kind == "member_up" && e.Node == node2);
        var upgraded = events.FindIndex(e => e.Kind == "daemon_upgraded" && e.Node == node2);
        Assert.True(0 <= unreachable && unreachable < removed && removed < upAgain && upAgain < upgraded,
            $"node 2's events out of order: unreachable {unreachable}, removed {removed}, up {upAgain}, upgraded {upgraded}");
        for (int i = 0; i < 3; i++)
        {
            Assert.Equal(binary, (await rigs[i].WaitForServingAsync(0, false)).GetProperty("binary").GetString());
            Assert.Equal(1, UpgradesOf(rigs[i]));
        }
        await CheckReadersAsync(readers);
    }

    [FuseFact]
    public async Task The_coordinators_own_node_cut_off_the_majority_takes_over_and_the_node_rejoins_and_is_upgraded_once()
    {
        await using var fleet = await StartFleetAsync([true, true, true]);
        var (network, dir, rigs, readers, pids) = (fleet.Network, fleet.Dir, fleet.Rigs, fleet.Readers, fleet.Pids);
        var binary = RolloutFleet.WrapperBinary(dir, "nydusd-v2", failFor: null);
        var node0 = FleetCluster.AddressOf(0);
        await StartRolloutAsync(rigs[1], binary, "--pause-on-failure");
        // Node 0 runs the coordinator (the oldest agent); its link goes down while node 1's daemon is being upgraded.
        await WaitForRolloutAsync(rigs[1], r => Coordinator(r) == node0 && State(r, 0) == "upgrading", "node 1's daemon upgrading");
        var watch = Stopwatch.StartNew();
        network.SetLink(0, up: false);

        // The majority side removes node 0; the coordinator starts there, finishes nodes 1 and 2 and waits for node 0.
        var waiting = await WaitForRolloutAsync(rigs[1], r => Coordinator(r) != node0 && State(r, 0) == "done" && State(r, 1) == "done"
            && r.GetProperty("message").GetString() is { } m && m.Contains(node0, StringComparison.Ordinal), "the moved coordinator waiting for node 0");
        output.WriteLine($"{watch.Elapsed.TotalSeconds:F1} s after the cut: coordinator {Coordinator(waiting)}: {waiting.GetProperty("message").GetString()}");
        Assert.Equal("running", waiting.GetProperty("state").GetString());
        Assert.Equal("pending", State(waiting, 2));
        // The minority side stopped its part: node 0 downed its own cluster node, and its daemon, never asked, serves on.
        await FleetCluster.WaitForOutputAsync(rigs[0], "Fleet: this node's cluster system ended", "node 0 downing itself");
        await readers[0].AdvanceAsync(100, AgentRig.Wait);
        Assert.Equal(pids[0], (await rigs[0].DaemonAsync()).GetProperty("pid").GetInt32());
        Assert.Equal(0, UpgradesOf(rigs[0]));

        network.SetLink(0, up: true);
        var done = await WaitForRolloutAsync(rigs[1], r => r.GetProperty("state").GetString() != "running", "the rollout's end");
        output.WriteLine(await CtlAsync(rigs[2], "fleet", "rollout"));
        output.WriteLine($"rollout with the coordinator's node cut off and back: {watch.Elapsed.TotalSeconds:F1} s from the cut");
        Assert.Equal("completed", done.GetProperty("state").GetString());
        var events = await WaitForEventsAsync(rigs[2], e => e.Any(x => x.Kind == "daemon_upgraded" && x.Node == node0), "node 0's daemon upgraded");
        Assert.Contains(events, e => e.Kind == "coordinator_moved");
        Assert.Contains(events, e => e.Kind == "member_removed" && e.Node == node0);
        for (int i = 0; i < 3; i++)
        {
            Assert.Equal(binary, (await rigs[i].WaitForServingAsync(0, false)).GetProperty("binary").GetString());
            Assert.Equal(1, UpgradesOf(rigs[i]));
        }
        await CheckReadersAsync(readers);
    }

    [FuseFact]
    public async Task A_standalone_agent_refuses_rollouts_clearly()
    {
        await using var rig = await AgentRig.StartAsync(hotStandby: false);
        var (status, body) = await rig.SendAsync("POST", "/api/v1/fleet/rollout", JsonSerializer.Serialize(new { binary = "/usr/bin/nydusd" }));
        Assert.Equal(501, status);
        Assert.Contains("not in a fleet", body);
        var (code, _, stderr) = await NydusdProcess.RunRawAsync(TimeSpan.FromSeconds(60), "ctl", "-S", rig.Socket, "fleet", "rollout");
        Assert.Equal(1, code);
        Assert.Contains("not in a fleet", stderr);
    }

    /// <summary>The three agents (<see cref="RolloutFleet"/>) with this class's HOCON: node i with rollouts on or off,
    /// and <paramref name="extra"/> HOCON for it (its journal elsewhere, say).</summary>
    private static Task<RolloutFleet> StartFleetAsync(bool[] rollouts, Func<int, string>? extra = null, int daemonsPerAgent = 1) =>
        RolloutFleet.StartAsync(i => Hocon(i, rollouts[i], extra?.Invoke(i) ?? ""), daemonsPerAgent);

    private static async Task<string> StartRolloutAsync(AgentRig rig, string binary, params string[] options)
    {
        var (code, stdout, stderr) = await NydusdProcess.RunRawAsync(TimeSpan.FromSeconds(60),
            ["ctl", "-S", rig.Socket, "fleet", "upgrade", "--binary", binary, .. options]);
        Assert.True(code == 0, $"fleet upgrade exited {code}: {stderr}");
        return stdout;
    }

    /// <summary>PUT /api/v1/fleet/rollout/ACTION, repeated (bounded) while the coordinator answers 503 or 504.</summary>
    private static async Task<string> ControlAsync(AgentRig rig, string action)
    {
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            var (status, body) = await rig.SendAsync("PUT", "/api/v1/fleet/rollout/" + action);
            if (status == 200) return body;
            if (status is not (503 or 504) || deadline.Elapsed > RolloutWait) throw new InvalidOperationException($"{action}: {status} {body}");
            await Task.Delay(500);
        }
    }

    private static async Task<string> CtlAsync(AgentRig rig, params string[] args)
    {
        var (code, stdout, stderr) = await NydusdProcess.RunRawAsync(TimeSpan.FromSeconds(60), ["ctl", "-S", rig.Socket, .. args]);
        Assert.True(code == 0, $"ctl {string.Join(' ', args)} exited {code}: {stderr}");
        return stdout;
    }

    private async Task<JsonElement> WaitForRolloutAsync(AgentRig rig, Func<JsonElement, bool> condition, string what)
    {
        var deadline = Stopwatch.StartNew();
        string last = "";
        while (deadline.Elapsed < RolloutWait)
        {
            try
            {
                var (status, body) = await rig.SendAsync("GET", "/api/v1/fleet/rollout");
                last = $"{status} {body}";
                if (status == 200)
                {
                    var rollout = JsonDocument.Parse(body).RootElement.Clone();
                    if (condition(rollout)) return rollout;
                }
            }
            catch (HttpRequestException e)
            {
                last = e.Message;
            }
            await Task.Delay(250);
        }
        output.WriteLine(rig.Agent.Output);
        throw new TimeoutException($"{what}: not seen by {rig.Socket} within {RolloutWait}; last answer {last}");
    }

    internal sealed record Event(string Kind, string? Rollout, string? Node, string Message);

    /// <summary>Polls the agent's fleet events (GET /api/v1/fleet/events) until <paramref name="condition"/> holds.</summary>
    internal static async Task<List<Event>> WaitForEventsAsync(AgentRig rig, Func<List<Event>, bool> condition, string what)
    {
        var deadline = Stopwatch.StartNew();
        var last = "";
        while (deadline.Elapsed < RolloutWait)
        {
            var (status, body) = await rig.SendAsync("GET", "/api/v1/fleet/events");
            last = $"{status} {body}";
            if (status == 200)
            {
                var events = JsonDocument.Parse(body).RootElement.GetProperty("events").EnumerateArray()
                    .Select(e => new Event(e.GetProperty("kind").GetString()!, e.GetProperty("rollout").GetString(), e.GetProperty("node").GetString(),
                        e.GetProperty("message").GetString()!)).ToList();
                if (condition(events)) return events;
            }
            await Task.Delay(250);
        }
        throw new TimeoutException($"{what}: not among the events of {rig.Socket} within {RolloutWait}; last answer {last}");
    }

    /// <summary>Polls the agent's Prometheus page (GET /metrics) until <paramref name="condition"/> holds.</summary>
    internal static async Task<string> WaitForMetricsAsync(AgentRig rig, Func<string, bool> condition, string what)
    {
        var deadline = Stopwatch.StartNew();
        var last = "";
        while (deadline.Elapsed < RolloutWait)
        {
            var (status, body) = await rig.SendAsync("GET", "/metrics");
            last = $"{status} {body}";
            if (status == 200 && condition(body)) return body;
            await Task.Delay(250);
        }
        throw new TimeoutException($"{what}: not on the Prometheus page of {rig.Socket} within {RolloutWait}; last page {last}");
    }

    /// <summary>The value of one sample ("name{labels}") of a Prometheus page, or null when it is not there.</summary>
    internal static double? MetricValue(string page, string sample) =>
        page.Split('\n').FirstOrDefault(l => l.StartsWith(sample + " ", StringComparison.Ordinal)) is { } line
            ? double.Parse(line[(sample.Length + 1)..], System.Globalization.CultureInfo.InvariantCulture)
            : null;

    private static string? Coordinator(JsonElement rollout) => rollout.GetProperty("coordinator").GetString();

    private static JsonElement Target(JsonElement rollout, int index) => rollout.GetProperty("targets")[index];

    private static string? State(JsonElement rollout, int index) => Target(rollout, index).GetProperty("state").GetString();

    /// <summary>Upgrade processes the agent started for a daemon, from its spawn log ("pid starttime role id").</summary>
    private static int UpgradesOf(AgentRig rig, string daemon = AgentRig.DaemonId) =>
        File.ReadLines(Path.Combine(rig.StateDir, "spawned.log")).Count(l => l.Split(' ') is [_, _, "upgrade", var id] && id == daemon);

    private async Task CheckReadersAsync(List<TreeReaders> readers)
    {
        foreach (var r in readers) await r.AdvanceAsync(50, AgentRig.Wait);
        for (int i = 0; i < readers.Count; i++)
        {
            // The first three read the nodes' d1; more come with more daemons per agent (node by node).
            var what = i < 3 ? $"node {i} d1" : $"reader set {i}";
            Assert.True(readers[i].Stop(AgentRig.Wait), $"a reader of {what} is still blocked");
            output.WriteLine($"{what}: {readers[i].Operations} reader operations, {readers[i].FailureCount} failed; "
                             + $"longest {readers[i].Longest.TotalMilliseconds:F0} ms ({readers[i].LongestWhat})");
            Assert.True(readers[i].FailureCount == 0, string.Join("\n", readers[i].Failures.Take(20)));
        }
    }
}
