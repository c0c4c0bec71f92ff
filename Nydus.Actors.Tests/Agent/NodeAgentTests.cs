using System.Text.Json;
using Nydus.Actors.Tests.Support;
using Nydus.Actors.Tests.Upgrade;
using Xunit;
using Xunit.Abstractions;

namespace Nydus.Actors.Tests.Agent;

/// <summary>
/// The node agent (`nydusd agent`) with real processes and a real FUSE mount: it fails a SIGKILLed daemon over
/// (restart, or its hot standby) with readers losing nothing, keeps its daemons across its own SIGKILL and
/// re-attaches to them, upgrades through its API, and refuses bad requests with 4xx.
/// </summary>
[Collection("upgrade")]
public sealed class NodeAgentTests(ITestOutputHelper output)
{
    private static readonly int Kills = int.TryParse(Environment.GetEnvironmentVariable("NYDUS_TEST_KILLS"), out var k) ? k : 10;
    private static readonly int StandbyKills = Math.Min(Kills, 5);

    [FuseFact]
    public async Task Agent_fails_over_ten_SIGKILLed_daemons_with_resend_losing_no_reader_operation()
    {
        await using var rig = await AgentRig.StartAsync(hotStandby: false);
        using var readers = new TreeReaders(rig.Tree, 4);
        readers.Start();
        await readers.AdvanceAsync(200, AgentRig.Wait);
        var recoveries = new List<TimeSpan>();
        var pids = new List<int> { (await rig.DaemonAsync()).GetProperty("pid").GetInt32() };
        for (int i = 1; i <= Kills; i++)
        {
            recoveries.Add(await rig.KillDaemonAsync());
            var entry = await rig.WaitForServingAsync(failovers: i, standby: false);
            pids.Add(entry.GetProperty("pid").GetInt32());
            await readers.AdvanceAsync(100, AgentRig.Wait);
        }

        Assert.True(readers.Stop(AgentRig.Wait), "a reader is still blocked");
        output.WriteLine($"{Kills} SIGKILLs under the agent (restart, resend): daemons {string.Join(" -> ", pids)}; {readers.Operations} reader "
                         + $"operations, {readers.FailureCount} failed; longest operation {readers.Longest.TotalMilliseconds:F0} ms "
                         + $"({readers.LongestWhat}); SIGKILL to first read {AgentRig.Summary(recoveries)}");
        Assert.True(readers.FailureCount == 0, string.Join("\n", readers.Failures.Take(20)));
        Assert.Equal(Kills + 1, pids.Distinct().Count());
        Assert.Contains("Failover " + Kills + " of daemon", rig.Agent.Output);
    }

    [FuseFact]
    public async Task An_agent_SIGKILLed_in_the_middle_of_an_upgrade_ends_the_leftover_process_once_restarted()
    {
        await using var rig = await AgentRig.StartAsync(hotStandby: false);
        using var readers = new TreeReaders(rig.Tree, 2);
        readers.Start();
        await readers.AdvanceAsync(100, AgentRig.Wait);
        var pid = (await rig.DaemonAsync()).GetProperty("pid").GetInt32();
        // A "new nydusd" slow to start: the agent is killed while its upgrade process exists and has not taken over.
        var slow = Path.Combine(rig.StateDir, "..", "nydusd-slow");
        await File.WriteAllTextAsync(slow, $"#!/bin/sh\nsleep 3\nexec '{NydusdProcess.BinaryPath}' \"$@\"\n");
        File.SetUnixFileMode(slow, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        var upgrade = rig.SendAsync("PUT", $"/api/v1/agent/daemons/{AgentRig.DaemonId}/upgrade", JsonSerializer.Serialize(new { binary = Path.GetFullPath(slow) }));
        var spawnLog = Path.Combine(rig.StateDir, "spawned.log");
        var deadline = System.Diagnostics.Stopwatch.StartNew();
        string[]? line = null;
        while (line is null)
        {
            Assert.True(deadline.Elapsed < AgentRig.Wait, "the agent did not start the upgrade process");
            line = File.ReadLines(spawnLog).Select(l => l.Split(' ')).FirstOrDefault(f => f is [_, _, "upgrade", AgentRig.DaemonId]);
            await Task.Delay(20);
        }
        var leftover = int.Parse(line[0]);
        rig.Agent.Signal(NydusdProcess.SIGKILL);
        await rig.Agent.WaitForExitAsync(AgentRig.Wait);
        await Assert.ThrowsAnyAsync<Exception>(() => upgrade);
        Assert.True(Running(leftover), "the upgrade process died with the agent: nothing left over to test");

        await rig.StartAgentAsync(hotStandby: false);
        var attached = await rig.WaitForServingAsync(failovers: 0, standby: false);
        Assert.Equal(pid, attached.GetProperty("pid").GetInt32());
        deadline.Restart();
        while (Running(leftover))
        {
            Assert.True(deadline.Elapsed < AgentRig.Wait, $"the leftover upgrade process {leftover} is still running\n{rig.Agent.Output}");
            await Task.Delay(50);
        }
        Assert.Contains($"ended pid {leftover} (upgrade), left over", rig.Agent.Output);
        await readers.AdvanceAsync(100, AgentRig.Wait);
        Assert.True(readers.Stop(AgentRig.Wait), "a reader is still blocked");
        output.WriteLine($"agent SIGKILLed with upgrade process {leftover} in flight: re-attached to pid {pid}, leftover ended; "
                         + $"{readers.Operations} reader operations, {readers.FailureCount} failed");
        Assert.True(readers.FailureCount == 0, string.Join("\n", readers.Failures.Take(20)));
    }

    [FuseFact]
    public async Task An_agent_SIGKILLed_after_the_old_daemon_exited_in_an_upgrade_adopts_the_new_one_once_restarted()
    {
        await using var rig = await AgentRig.StartAsync(hotStandby: false);
        using var readers = new TreeReaders(rig.Tree, 2);
        readers.Start();
        await readers.AdvanceAsync(100, AgentRig.Wait);
        // The daemon first runs under a wrapper that outlives its nydusd: once nydusd has exited (told to by the next
        // upgrade) it leaves a marker and waits, so the agent, waiting for the old pid to end, is caught between the old
        // daemon's exit and recording the new one.
        var marker = Path.Combine(rig.StateDir, "..", "old-nydusd-exited");
        var holding = Path.GetFullPath(Path.Combine(rig.StateDir, "..", "nydusd-holding"));
        await File.WriteAllTextAsync(holding, $"#!/bin/sh\n'{NydusdProcess.BinaryPath}' \"$@\"\ntouch '{marker}'\nexec sleep 600\n");
        File.SetUnixFileMode(holding, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        var (status, body) = await rig.SendAsync("PUT", $"/api/v1/agent/daemons/{AgentRig.DaemonId}/upgrade", JsonSerializer.Serialize(new { binary = holding }));
        Assert.True(status == 200, $"upgrade to the holding wrapper: {status} {body}");
        var old = (await rig.DaemonAsync()).GetProperty("pid").GetInt32();
        await readers.AdvanceAsync(50, AgentRig.Wait);

        var upgrade = rig.SendAsync("PUT", $"/api/v1/agent/daemons/{AgentRig.DaemonId}/upgrade",
            JsonSerializer.Serialize(new { binary = NydusdProcess.BinaryPath }));
        var deadline = System.Diagnostics.Stopwatch.StartNew();
        while (!File.Exists(marker))
        {
            Assert.True(deadline.Elapsed < AgentRig.Wait, $"the old nydusd did not exit within {AgentRig.Wait}\n{rig.Agent.Output}");
            await Task.Delay(20);
        }
        rig.Agent.Signal(NydusdProcess.SIGKILL);
        await rig.Agent.WaitForExitAsync(AgentRig.Wait);
        await Assert.ThrowsAnyAsync<Exception>(() => upgrade);
        // Now the old daemon is gone altogether (its wrapper too); the new one waits in READY with the mount taken over.
        Assert.Equal(0, AgentRig.Kill(old));
        deadline.Restart();
        while (Running(old))
        {
            Assert.True(deadline.Elapsed < AgentRig.Wait, $"the old daemon's wrapper {old} did not end");
            await Task.Delay(20);
        }
        var successor = int.Parse(File.ReadLines(Path.Combine(rig.StateDir, "spawned.log")).Select(l => l.Split(' '))
            .Last(f => f is [_, _, "upgrade", AgentRig.DaemonId])[0]);
        Assert.True(Running(successor), "the new daemon died with the agent: nothing to adopt");

        await rig.StartAgentAsync(hotStandby: false);
        var adopted = await rig.WaitForServingAsync(failovers: 0, standby: false);
        Assert.Equal(successor, adopted.GetProperty("pid").GetInt32());
        Assert.Equal(NydusdProcess.BinaryPath, adopted.GetProperty("binary").GetString());
        Assert.Contains($"adopted pid {successor}", rig.Agent.Output);
        await readers.AdvanceAsync(100, AgentRig.Wait);
        // One process serves the id: of everything the agent ever started for it, only the adopted one lives.
        var alive = File.ReadLines(Path.Combine(rig.StateDir, "spawned.log")).Select(l => l.Split(' '))
            .Where(f => f is [_, _, _, AgentRig.DaemonId] && Nydus.Actors.Agent.AgentProcesses.IsAlive(int.Parse(f[0]), long.Parse(f[1])))
            .Select(f => int.Parse(f[0])).ToList();
        Assert.Equal([successor], alive);
        // And the adopted daemon is the agent's like any other: it is failed over when killed.
        await rig.KillDaemonAsync();
        await rig.WaitForServingAsync(failovers: 1, standby: false);
        await readers.AdvanceAsync(100, AgentRig.Wait);
        Assert.True(readers.Stop(AgentRig.Wait), "a reader is still blocked");
        output.WriteLine($"agent SIGKILLed after old pid {old} exited mid-upgrade: new pid {successor} adopted, then failed over; "
                         + $"{readers.Operations} reader operations, {readers.FailureCount} failed; longest {readers.Longest.TotalMilliseconds:F0} ms "
                         + $"({readers.LongestWhat})");
        Assert.True(readers.FailureCount == 0, string.Join("\n", readers.Failures.Take(20)));
    }

    private static bool Running(int pid)
    {
        try
        {
            return File.ReadAllText($"/proc/{pid}/stat").Split(' ')[2] != "Z";
        }
        catch (IOException)
        {
            return false;
        }
    }

    [FuseFact]
    public async Task Agent_with_hot_standby_fails_over_SIGKILLed_daemons_losing_no_reader_operation()
    {
        await using var rig = await AgentRig.StartAsync(hotStandby: true);
        using var readers = new TreeReaders(rig.Tree, 4);
        readers.Start();
        await readers.AdvanceAsync(200, AgentRig.Wait);
        var recoveries = new List<TimeSpan>();
        for (int i = 1; i <= StandbyKills; i++)
        {
            var before = await rig.WaitForServingAsync(failovers: i - 1, standby: true);
            var standby = before.GetProperty("standby_pid").GetInt32();
            // The agent lists a standby once its API reports INIT; the standby finishes recovering its journal
            // seconds later on this machine, and a takeover waits for that. A settled standby is the case to time:
            // wait for its log line (the i-th standby of this daemon).
            var log = before.GetProperty("log_file").GetString()!;
            var settled = System.Diagnostics.Stopwatch.StartNew();
            while (CountOf(await File.ReadAllTextAsync(log), "waiting for a takeover (Upgrade)") < i)
            {
                Assert.True(settled.Elapsed < AgentRig.Wait, $"standby {standby} did not settle within {AgentRig.Wait}");
                await Task.Delay(50);
            }
            recoveries.Add(await rig.KillDaemonAsync());
            var after = await rig.WaitForServingAsync(failovers: i, standby: false);
            // The standby took over: no new process was needed to serve again.
            Assert.Equal(standby, after.GetProperty("pid").GetInt32());
            await readers.AdvanceAsync(100, AgentRig.Wait);
        }

        Assert.True(readers.Stop(AgentRig.Wait), "a reader is still blocked");
        output.WriteLine($"{StandbyKills} SIGKILLs under the agent (hot standby, resend): {readers.Operations} reader operations, "
                         + $"{readers.FailureCount} failed; longest operation {readers.Longest.TotalMilliseconds:F0} ms ({readers.LongestWhat}); "
                         + $"SIGKILL to first read {AgentRig.Summary(recoveries)}");
        Assert.True(readers.FailureCount == 0, string.Join("\n", readers.Failures.Take(20)));
        Assert.Contains("(hot standby)", rig.Agent.Output);
        var daemonLog = await File.ReadAllTextAsync((await rig.DaemonAsync()).GetProperty("log_file").GetString()!);
        // The standbys started with --upgrade drained because the agent asked (takeover?failover=true).
        Assert.Contains("failover True", daemonLog);
    }

    [FuseFact]
    public async Task Daemons_outlive_a_SIGKILLed_agent_and_a_restarted_agent_reattaches_and_upgrades_them()
    {
        await using var rig = await AgentRig.StartAsync(hotStandby: false);
        var first = await rig.DaemonAsync();
        var pid = first.GetProperty("pid").GetInt32();
        using var readers = new TreeReaders(rig.Tree, 4);
        readers.Start();
        await readers.AdvanceAsync(200, AgentRig.Wait);

        rig.Agent.Signal(NydusdProcess.SIGKILL);
        await rig.Agent.WaitForExitAsync(AgentRig.Wait);
        // Nothing depends on the agent: the daemon (its own session, its log a file) keeps serving.
        await readers.AdvanceAsync(300, AgentRig.Wait);
        Assert.True(Directory.Exists($"/proc/{pid}"), "the daemon died with the agent");

        await rig.StartAgentAsync(hotStandby: false);
        var attached = await rig.WaitForDaemonAsync(d => d.GetProperty("state").GetString() == "running" && d.GetProperty("fd_held").GetBoolean(),
            "re-attached with its fd held");
        output.WriteLine($"after the agent restart: {attached}");
        Assert.Equal(pid, attached.GetProperty("pid").GetInt32());
        Assert.Contains("Re-attached daemon d1", rig.Agent.Output);

        var (status, body) = await rig.SendAsync("PUT", "/api/v1/agent/daemons/d1/upgrade",
            JsonSerializer.Serialize(new { binary = NydusdProcess.BinaryPath }));
        Assert.True(status == 200, $"upgrade answered {status}: {body}");
        var upgraded = await rig.WaitForServingAsync(failovers: 0, standby: false);
        Assert.NotEqual(pid, upgraded.GetProperty("pid").GetInt32());
        await readers.AdvanceAsync(200, AgentRig.Wait);

        Assert.True(readers.Stop(AgentRig.Wait), "a reader is still blocked");
        output.WriteLine($"agent SIGKILL, restart, upgrade {pid} -> {upgraded.GetProperty("pid").GetInt32()}: {readers.Operations} reader operations, "
                         + $"{readers.FailureCount} failed; longest operation {readers.Longest.TotalMilliseconds:F0} ms ({readers.LongestWhat})");
        Assert.True(readers.FailureCount == 0, string.Join("\n", readers.Failures.Take(20)));
    }

    /// <summary>
    /// A daemon that dies while no agent holds its fd cannot be failed over: the kernel ended the connection with the
    /// last fd. A restarted agent reports it lost (without touching the dead mountpoint) and DELETE detaches it.
    /// </summary>
    [FuseFact]
    public async Task A_daemon_that_died_while_the_agent_was_down_is_reported_lost_and_can_be_removed()
    {
        await using var rig = await AgentRig.StartAsync(hotStandby: false);
        var pid = (await rig.DaemonAsync()).GetProperty("pid").GetInt32();
        // The logs the agent keeps (the daemon's output, the spawn log) are owner-only whatever the umask.
        var logs = Directory.GetFiles(rig.StateDir, "*.log", SearchOption.AllDirectories);
        Assert.Contains(logs, l => Path.GetFileName(l) == "daemon.log");
        Assert.Contains(logs, l => Path.GetFileName(l) == "spawned.log");
        Assert.All(logs, l => Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(l)));
        rig.Agent.Signal(NydusdProcess.SIGKILL);
        await rig.Agent.WaitForExitAsync(AgentRig.Wait);
        Assert.Equal(0, AgentRig.Kill(pid));
        for (int i = 0; i < 200 && Directory.Exists($"/proc/{pid}"); i++) await Task.Delay(50);

        await rig.StartAgentAsync(hotStandby: false);
        var lost = await rig.WaitForDaemonAsync(d => d.GetProperty("state").GetString() == "lost", "lost");
        output.WriteLine($"after the agent restart: {lost}");
        Assert.False(lost.GetProperty("fd_held").GetBoolean());
        Assert.Contains("cannot be failed over", lost.GetProperty("message").GetString());
        Assert.True(NydusdMount.IsListedInMounts(rig.Tree.MountPoint));

        var (status, body) = await rig.SendAsync("PUT", "/api/v1/agent/daemons/d1/upgrade");
        Assert.True(status == 409, $"upgrade of a lost daemon answered {status}: {body}");
        (status, body) = await rig.SendAsync("DELETE", "/api/v1/agent/daemons/d1");
        Assert.True(status == 204, $"DELETE answered {status}: {body}");
        Assert.False(NydusdMount.IsListedInMounts(rig.Tree.MountPoint));
    }

    [FuseFact]
    public async Task Bad_requests_are_refused_with_a_message_and_unknown_ids_are_404()
    {
        await using var rig = await AgentRig.StartAsync(hotStandby: false);
        var bad = new (string Method, string Path, string? Body, int Status, string Fragment)[]
        {
            ("POST", "/api/v1/agent/daemons", "not json", 400, "not"),
            ("POST", "/api/v1/agent/daemons", "{\"args\":[]}", 400, "\"id\" is required"),
            ("POST", "/api/v1/agent/daemons", "{\"id\":\"x\"}", 400, "\"args\" is required"),
            ("POST", "/api/v1/agent/daemons", null, 400, "needs a JSON request body"),
            ("POST", "/api/v1/agent/daemons", "{\"id\":\"../x\",\"args\":[\"-M\",\"/tmp\"]}", 400, "invalid id"),
            ("POST", "/api/v1/agent/daemons", "{\"id\":\"x\",\"args\":[\"--apisock\",\"/tmp/a.sock\",\"-M\",\"/tmp\"]}", 400, "--apisock is set by the agent"),
            ("POST", "/api/v1/agent/daemons", "{\"id\":\"x\",\"args\":[\"--bootstrap\",\"/x\"]}", 400, "--mountpoint"),
            ("POST", "/api/v1/agent/daemons", JsonSerializer.Serialize(new { id = AgentRig.DaemonId, args = rig.DaemonArgs() }), 409, "already managed"),
            ("POST", "/api/v1/agent/daemons", JsonSerializer.Serialize(new { id = "other", args = rig.DaemonArgs() }), 409, "already served"),
            ("PUT", "/api/v1/agent/daemons/nope/upgrade", null, 404, "no managed daemon with id nope"),
            ("DELETE", "/api/v1/agent/daemons/nope", null, 404, "no managed daemon with id nope"),
            ("GET", "/api/v1/agent/daemons/nope", null, 404, "no managed daemon with id nope"),
            ("PUT", "/api/v1/agent/daemons/d1/upgrade", "{\"binary\":\"relative/nydusd\"}", 400, "absolute path"),
            ("PUT", "/api/v1/agent/daemons/d1/upgrade", "{\"binary\":\"/nonexistent/nydusd\"}", 400, "does not exist"),
            ("PUT", "/api/v1/agent/daemons/d1/frobnicate", null, 404, "no API endpoint"),
        };
        foreach (var (method, path, body, expected, fragment) in bad)
        {
            var (status, text) = await rig.SendAsync(method, path, body);
            output.WriteLine($"{method} {path} {body}: {status} {text}");
            Assert.Equal(expected, status);
            Assert.Contains(fragment, JsonDocument.Parse(text).RootElement.GetProperty("message").GetString());
        }

        // A daemon that cannot start (a missing image) is refused with its log, and is not listed.
        var (failedStatus, failed) = await rig.SendAsync("POST", "/api/v1/agent/daemons", JsonSerializer.Serialize(new
        {
            id = "broken",
            args = new[] { "-M", Path.Combine(Path.GetDirectoryName(rig.Tree.MountPoint)!, "mnt2"), "--bootstrap", rig.Tree.Image + ".missing", "--localfs-dir", rig.Tree.Source },
        }));
        output.WriteLine($"broken daemon: {failedStatus} {failed}");
        Assert.Equal(400, failedStatus);
        Assert.Contains("failed to start", failed);
        var (_, list) = await rig.SendAsync("GET", "/api/v1/agent/daemons");
        Assert.Equal(1, JsonDocument.Parse(list).RootElement.GetArrayLength());

        // DELETE stops the daemon (SIGTERM: it unmounts) and forgets it.
        var pid = (await rig.DaemonAsync()).GetProperty("pid").GetInt32();
        var (deleted, deleteBody) = await rig.SendAsync("DELETE", "/api/v1/agent/daemons/d1");
        Assert.True(deleted == 204, $"DELETE answered {deleted}: {deleteBody}");
        Assert.False(NydusdMount.IsListedInMounts(rig.Tree.MountPoint));
        // Gone (the agent, its parent, reaps it: allow a moment for that).
        for (int i = 0; i < 100 && Directory.Exists($"/proc/{pid}"); i++) await Task.Delay(50);
        Assert.False(Directory.Exists($"/proc/{pid}"));
        (_, list) = await rig.SendAsync("GET", "/api/v1/agent/daemons");
        Assert.Equal(0, JsonDocument.Parse(list).RootElement.GetArrayLength());
    }

    private static int CountOf(string text, string fragment)
    {
        int count = 0;
        for (int at = text.IndexOf(fragment, StringComparison.Ordinal); at >= 0; at = text.IndexOf(fragment, at + 1, StringComparison.Ordinal)) count++;
        return count;
    }
}
