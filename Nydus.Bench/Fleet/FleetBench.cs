using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Nydus.Actors.Tests.Agent;
using Nydus.Actors.Tests.Support;
using Nydus.Actors.Tests.Upgrade;

namespace Nydus.Bench.Fleet;

/// <summary>
/// Issue 19's numbers: a fleet of 3 hosts (agents of the published nydusd, each in its own network namespace on a
/// bridge, as the fleet tests make them: <see cref="RolloutFleet"/>, linked from the test project) × 4 daemons, each
/// daemon serving a generated EROFS tree under a verifying reader thread. Measured: (a) the whole fleet's rolling
/// upgrade, `ctl fleet upgrade` to the rollout completed, at --batch 1 and --batch 4; (b) the longest reader operation
/// anywhere during each rollout, and failed reader operations; (c) how long after a daemon changes on one host every
/// agent's <c>GET /api/v1/fleet</c> shows the change (after its upgrade, its addition, its removal, and after a whole
/// rollout). Everything the bench makes (namespaces, agents, daemons, mounts) is removed by the fleet's disposal,
/// whatever happens.
/// </summary>
public static class FleetBench
{
    private const int DaemonsPerHost = 4;
    private const int Hosts = 3;
    private static readonly int[] RolloutBatches = [4, 1, 4];
    private const int ChangeRounds = 3;
    private static readonly TimeSpan RolloutWait = TimeSpan.FromMinutes(10);
    private static readonly TimeSpan ConvergenceWait = TimeSpan.FromSeconds(60);
    private static readonly TimeSpan QuietWindow = TimeSpan.FromSeconds(20);

    /// <summary>The fleet tests' cluster (publish-interval 1 s, stable-after 5 s) with the rollout's default gates.</summary>
    private static string Hocon(int node) => FleetCluster.Hocon(node, "nydus.agent.cluster.rollouts = on");

    public static Task<BenchReport> RunAsync(string nydusd, string repoRoot)
    {
        // The linked test rig starts `nydusd` from $NYDUS_NYDUSD: the published build under test. Its watchdog aborts
        // a rig's FUSE connections after $NYDUS_TEST_RIG_MINUTES (8 by default, for a test): a bench at load 40-80
        // takes longer. Both are read when the rig is first used, in RunFleetAsync, so they are set here first.
        Environment.SetEnvironmentVariable("NYDUS_NYDUSD", nydusd);
        Environment.SetEnvironmentVariable("NYDUS_TEST_RIG_MINUTES", "120");
        return RunFleetAsync();
    }

    private static async Task<BenchReport> RunFleetAsync()
    {
        var loadAtStart = LoadAverage();
        var formed = Stopwatch.StartNew();
        await using var fleet = await RolloutFleet.StartAsync(Hocon, DaemonsPerHost, readersOfFirst: 1);
        var daemons = fleet.MoreDaemons.Prepend(AgentRig.DaemonId).ToArray();
        await WaitEveryAgentAsync(fleet, view => AllDaemons(view).Count(d => d.Healthy) == Hosts * DaemonsPerHost, "all 12 daemons healthy");
        var formedIn = formed.Elapsed;
        Console.WriteLine($"  fleet of {Hosts} agents × {DaemonsPerHost} daemons serving, every agent listing them, in {formedIn.TotalSeconds:F1} s");

        // A window with no rollout: the longest reader operation the load of this machine alone gives.
        foreach (var r in fleet.Readers) r.ResetLongest();
        await Task.Delay(QuietWindow);
        var quiet = Longest(fleet);

        var rollouts = new List<(int Batch, TimeSpan Took, TimeSpan Converged, TimeSpan Stall, string StallWhat, int Failed)>();
        for (int n = 0; n < RolloutBatches.Length; n++)
        {
            var batch = RolloutBatches[n];
            var binary = RolloutFleet.WrapperBinary(fleet.Dir, $"nydusd-r{n + 1}", failFor: null);
            var failedBefore = fleet.Readers.Sum(r => r.FailureCount);
            foreach (var r in fleet.Readers) r.ResetLongest();
            var watch = Stopwatch.StartNew();
            await CtlAsync(fleet.Rigs[n % Hosts], "fleet", "upgrade", "--binary", binary, "--batch", batch.ToString(CultureInfo.InvariantCulture));
            var done = await WaitForRolloutEndAsync(fleet.Rigs[(n + 1) % Hosts]);
            var took = watch.Elapsed;
            var state = done.GetProperty("state").GetString();
            if (state != "completed") throw new InvalidOperationException($"rollout {n + 1} ended {state}: {done}");
            var converged = Stopwatch.StartNew();
            await WaitEveryAgentAsync(fleet, view => AllDaemons(view).Count(d => d.Binary == binary && d.Healthy) == Hosts * DaemonsPerHost,
                $"all 12 daemons on {binary}");
            var (stall, what) = Longest(fleet);
            rollouts.Add((batch, took, converged.Elapsed, stall, what, fleet.Readers.Sum(r => r.FailureCount) - failedBefore));
            Console.WriteLine($"  rollout {n + 1} (--batch {batch}): {took.TotalSeconds:F1} s to completed, every agent listing all 12 on the "
                              + $"new binary {converged.Elapsed.TotalMilliseconds:F0} ms later; longest reader operation {stall.TotalMilliseconds:F0} ms ({what}); "
                              + $"failed reader operations {rollouts[^1].Failed}; load {LoadAverage()}");
        }

        // One daemon changes on one host; the time from its agent's answer until every agent's fleet view shows it.
        var upgraded = new List<TimeSpan>();
        var added = new List<TimeSpan>();
        var removed = new List<TimeSpan>();
        for (int n = 0; n < ChangeRounds; n++)
        {
            var host = n % Hosts;
            var rig = fleet.Rigs[host];
            var id = daemons[n % daemons.Length];
            var (status, body) = await rig.SendAsync("PUT", $"/api/v1/agent/daemons/{id}/upgrade");
            if (status != 200) throw new InvalidOperationException($"upgrade of {id} on node {host} answered {status}: {body}");
            var pid = JsonDocument.Parse(body).RootElement.GetProperty("pid").GetInt32();
            upgraded.Add(await ConvergedAsync(fleet, view => Daemon(view, host, id) is { } d && d.Pid == pid && d.Healthy,
                $"node {host}'s {id} as pid {pid}"));

            var extra = $"c{n}";
            await rig.AddDaemonAsync(extra);
            added.Add(await ConvergedAsync(fleet, view => Daemon(view, host, extra) is { Healthy: true }, $"node {host}'s new {extra}"));

            (status, body) = await rig.SendAsync("DELETE", $"/api/v1/agent/daemons/{extra}");
            if (status != 204) throw new InvalidOperationException($"DELETE {extra} on node {host} answered {status}: {body}");
            removed.Add(await ConvergedAsync(fleet, view => Daemon(view, host, extra) is null, $"node {host}'s {extra} gone"));
            Console.WriteLine($"  change {n + 1} on node {host}: upgraded {upgraded[^1].TotalMilliseconds:F0} ms, added {added[^1].TotalMilliseconds:F0} ms, "
                              + $"removed {removed[^1].TotalMilliseconds:F0} ms until every agent showed it");
        }

        foreach (var r in fleet.Readers) await r.AdvanceAsync(20, AgentRig.Wait);
        var operations = fleet.Readers.Sum(r => r.Operations);
        var failures = fleet.Readers.SelectMany(r => r.Failures).ToList();
        var loadAtEnd = LoadAverage();

        var report = new BenchReport($"Fleet: {Hosts} hosts × {DaemonsPerHost} daemons, rolling upgrade and fleet-state convergence",
            ["measure", "n", "median", "max", "all"]);
        foreach (var batch in RolloutBatches.Distinct())
        {
            var of = rollouts.Where(r => r.Batch == batch).ToList();
            Row(report, $"rollout --batch {batch}: `ctl fleet upgrade` → completed (s)", of.Select(r => r.Took.TotalSeconds), "F1");
            Row(report, $"rollout --batch {batch}: longest reader operation anywhere (ms)", of.Select(r => r.Stall.TotalMilliseconds), "F0");
            Row(report, $"rollout --batch {batch}: failed reader operations", of.Select(r => (double)r.Failed), "F0");
        }
        Row(report, "longest reader operation, 20 s without a rollout (ms)", [quiet.Longest.TotalMilliseconds], "F0");
        Row(report, "rollout completed → every agent lists all 12 daemons on the new binary (ms)", rollouts.Select(r => r.Converged.TotalMilliseconds), "F0");
        Row(report, "daemon upgraded (agent answered) → every agent shows its new pid (ms)", upgraded.Select(t => t.TotalMilliseconds), "F0");
        Row(report, "daemon added (agent answered 201) → every agent lists it healthy (ms)", added.Select(t => t.TotalMilliseconds), "F0");
        Row(report, "daemon removed (agent answered 204) → no agent lists it (ms)", removed.Select(t => t.TotalMilliseconds), "F0");
        Row(report, "fleet formed: 3 agents started, 12 daemons serving, every agent listing them (s)", [formedIn.TotalSeconds], "F1");
        report.Note($"Hosts: {Hosts} `nydusd agent` processes of the published build, each in its own network namespace joined to a bridge by a veth pair "
                    + "(10.77.0.1-3), one Akka.Cluster; each agent manages 4 daemons, each serving its own generated EROFS tree (32 files, 0 B to 3 MB) over FUSE.");
        report.Note("Readers: one thread per daemon (12) looping stat, read (SHA-256 checked, page cache dropped first) and readdir (names checked) over its "
                    + $"tree; {operations} operations in all, {failures.Count} failed{(failures.Count == 0 ? "" : ": " + string.Join("; ", failures.Take(5)))}. "
                    + "A rollout's longest operation is the longest that ended between `ctl fleet upgrade` and every agent listing the new binary; "
                    + $"the longest in the quiet window was {quiet.What}, during the rollouts: "
                    + string.Join("; ", rollouts.Select((r, i) => $"{i + 1}: {r.StallWhat}")) + ".");
        report.Note("Rollouts: each with its own new binary (a script that execs the same nydusd), --batch 4, 1 and 4, started through "
                    + "another agent each time; the coordinator (cluster singleton) upgrades each daemon through its agent's live upgrade and waits for "
                    + "its health gate (settle 2 s, the default) before the next batch. Completed is seen by polling another agent's "
                    + "`GET /api/v1/fleet/rollout` every 100 ms.");
        report.Note("Convergence: `publish-interval = 1s` (the shipped default is 5 s: add up to 4 s) and Akka Distributed Data's gossip; every agent's "
                    + "`GET /api/v1/fleet` polled every 50 ms from the moment the changing agent answered, the time is when the last of the three showed it. "
                    + $"{ChangeRounds} rounds, one host after another: `PUT /api/v1/agent/daemons/ID/upgrade` of a serving daemon, `POST` of a fifth daemon "
                    + "(answered once it serves with its fd held), `DELETE` of it.");
        report.Note($"Load average {loadAtStart} at the start, {loadAtEnd} at the end (other sessions share this 2-core machine); 15 nydusd processes "
                    + "(3 agents, 12 daemons) and 12 reader threads of the bench run beside them.");
        report.Note("Published ReadyToRun Release build. `bash build.sh Bench --suite=fleet` (needs root: network namespaces, FUSE).");
        return report;
    }

    private static void Row(BenchReport report, string measure, IEnumerable<double> values, string format)
    {
        var sorted = values.Order().ToList();
        report.Add(measure, sorted.Count.ToString(CultureInfo.InvariantCulture), sorted[sorted.Count / 2].ToString(format, CultureInfo.InvariantCulture),
            sorted[^1].ToString(format, CultureInfo.InvariantCulture), string.Join(", ", sorted.Select(v => v.ToString(format, CultureInfo.InvariantCulture))));
    }

    private static (TimeSpan Longest, string What) Longest(RolloutFleet fleet) =>
        fleet.Readers.Select(r => (r.Longest, r.LongestWhat)).MaxBy(l => l.Longest);

    private sealed record FleetDaemon(string Node, string Id, int Pid, bool Healthy, string? Binary);

    private static IEnumerable<FleetDaemon> AllDaemons(JsonElement view) =>
        view.GetProperty("nodes").EnumerateArray().SelectMany(n => n.GetProperty("daemons").EnumerateArray().Select(d =>
            new FleetDaemon(n.GetProperty("address").GetString()!, d.GetProperty("id").GetString()!, d.GetProperty("pid").GetInt32(),
                d.GetProperty("healthy").GetBoolean(), d.TryGetProperty("binary", out var b) ? b.GetString() : null)));

    private static FleetDaemon? Daemon(JsonElement view, int host, string id) =>
        AllDaemons(view).FirstOrDefault(d => d.Node == FleetCluster.AddressOf(host) && d.Id == id);

    /// <summary>Polls every agent's fleet view (50 ms apart) until each satisfies <paramref name="condition"/>; the
    /// time until the last one did.</summary>
    private static async Task<TimeSpan> ConvergedAsync(RolloutFleet fleet, Func<JsonElement, bool> condition, string what)
    {
        var watch = Stopwatch.StartNew();
        var seen = await Task.WhenAll(fleet.Rigs.Select(async rig =>
        {
            while (true)
            {
                if (condition(await FleetCluster.FleetAsync(rig))) return watch.Elapsed;
                if (watch.Elapsed > ConvergenceWait) throw new TimeoutException($"{what}: not shown by {rig.Socket} within {ConvergenceWait}");
                await Task.Delay(50);
            }
        }));
        return seen.Max();
    }

    private static Task WaitEveryAgentAsync(RolloutFleet fleet, Func<JsonElement, bool> condition, string what) =>
        Task.WhenAll(fleet.Rigs.Select(rig => FleetCluster.WaitForFleetAsync(rig, condition, what)));

    /// <summary>Polls the rollout (100 ms apart) until it is no longer running (bounded by <see cref="RolloutWait"/>).</summary>
    private static async Task<JsonElement> WaitForRolloutEndAsync(AgentRig rig)
    {
        var watch = Stopwatch.StartNew();
        var last = "";
        while (watch.Elapsed < RolloutWait)
        {
            var (status, body) = await rig.SendAsync("GET", "/api/v1/fleet/rollout");
            last = $"{status} {body}";
            if (status == 200 && JsonDocument.Parse(body).RootElement.Clone() is var rollout && rollout.GetProperty("state").GetString() != "running")
                return rollout;
            await Task.Delay(100);
        }
        throw new TimeoutException($"the rollout did not end within {RolloutWait}; last answer {last}");
    }

    private static async Task CtlAsync(AgentRig rig, params string[] args)
    {
        var (code, _, stderr) = await NydusdProcess.RunRawAsync(TimeSpan.FromSeconds(120), ["ctl", "-S", rig.Socket, .. args]);
        if (code != 0) throw new InvalidOperationException($"ctl {string.Join(' ', args)} exited {code}: {stderr}");
    }

    private static string LoadAverage() => File.ReadAllText("/proc/loadavg").Split(' ')[0];
}
