using Nydus.Actors.Tests.Support;
using Nydus.Actors.Tests.Upgrade;
using Xunit;
using Xunit.Abstractions;

namespace Nydus.Actors.Tests.Agent;

/// <summary>
/// The agent's journal on PostgreSQL, by configuration only (a --hocon file naming Akka.Persistence.Sql's PostgreSQL
/// provider and a connection string): a throwaway server on a Unix socket, a real agent managing a daemon under
/// verifying readers, SIGKILLed and restarted: the restarted agent recovers its daemon from PostgreSQL and
/// re-attaches to it, and no SQLite journal is made in its state dir.
/// </summary>
[Collection("upgrade")]
public sealed class PostgresJournalTests(ITestOutputHelper output)
{
    [FuseFact]
    public async Task An_agent_journal_on_PostgreSQL_survives_an_agent_SIGKILL_and_the_restart_reattaches()
    {
        using var postgres = PostgresServer.Start();
        const string persistenceId = "nydusd-agent-pgtest";
        var hocon = $$"""
            akka.persistence.journal.sql { provider-name = "PostgreSQL.15", connection-string = "{{postgres.ConnectionString}}" }
            akka.persistence.snapshot-store.sql { provider-name = "PostgreSQL.15", connection-string = "{{postgres.ConnectionString}}" }
            nydus.agent.persistence-id = "{{persistenceId}}"
            """;
        await using var rig = await AgentRig.StartInNetworkNamespaceAsync(null, hocon);
        var pid = (await rig.DaemonAsync()).GetProperty("pid").GetInt32();
        using var readers = new TreeReaders(rig.Tree, 2);
        readers.Start();
        await readers.AdvanceAsync(100, AgentRig.Wait);

        var events = int.Parse(postgres.Query($"select count(*) from journal where persistence_id = '{persistenceId}'"));
        Assert.True(events > 0, "the agent wrote no event to PostgreSQL");
        Assert.False(File.Exists(Path.Combine(rig.StateDir, "journal.db")), "a SQLite journal was made although the journal is on PostgreSQL");

        rig.Agent.Signal(NydusdProcess.SIGKILL);
        await rig.Agent.WaitForExitAsync(AgentRig.Wait);
        await rig.StartAgentAsync(hotStandby: false);
        var attached = await rig.WaitForDaemonAsync(d => d.GetProperty("state").GetString() == "running" && d.GetProperty("fd_held").GetBoolean(),
            "re-attached with its fd held");
        Assert.Equal(pid, attached.GetProperty("pid").GetInt32());
        Assert.Contains("Re-attached daemon d1", rig.Agent.Output);
        await readers.AdvanceAsync(100, AgentRig.Wait);

        Assert.True(readers.Stop(AgentRig.Wait), "a reader is still blocked");
        output.WriteLine($"journal on PostgreSQL: {events} events before the SIGKILL; re-attached to pid {pid}; {readers.Operations} reader operations, "
                         + $"{readers.FailureCount} failed");
        Assert.True(readers.FailureCount == 0, string.Join("\n", readers.Failures.Take(20)));
    }
}
