using Akka.Actor;
using Microsoft.Data.Sqlite;
using Nydus.Actors.Config;
using Nydus.Actors.Daemon;
using Nydus.Actors.Daemon.Block;
using Nydus.Actors.Daemon.Persistence;
using Nydus.Actors.Storage.Cache;
using Nydus.Actors.Tests.Support;
using Xunit;

namespace Nydus.Actors.Tests.Block;

/// <summary>
/// The block service over a journal it cannot read (its sealed records do not open with the daemon's key), on the
/// real SQLite journal, with the upstream fixture served on a real Unix socket and read by a raw NBD client.
/// Without a takeover it serves nothing, refuses changes at once and leaves the exports out of the handoff state
/// (a successor reads the journal itself). With a takeover's table it serves that table, hands it on at the next
/// sendfd, refuses changes at once (no write to a journal that is gone, no hang) and starts no new journal.
/// </summary>
public sealed class BlockServiceJournalLossTests : IDisposable
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(30);
    private const string PersistenceId = "nydusd-loss-block";
    private readonly TempDir _dir = new("blk-journal-loss");
    private readonly JournalFiles _files;

    public BlockServiceJournalLossTests()
    {
        _files = new JournalFiles(Directory.CreateDirectory(_dir.Combine("work")).FullName);
        _files.CheckOrCreateDatabases([_files.JournalPath, _files.SnapshotsPath]);
        _files.LoadOrCreateKey();
    }

    private string Socket => _dir.Combine("img.nbd");

    private BlockExportRecord Record => new("img", UpstreamBlockImage.Bootstrap,
        NydusConfigLoader.CreateLocalFsDirConfigText(UpstreamBlockImage.BlobDir), null, Socket);

    private ActorSystem NewSystem() => ActorSystem.Create("blk-loss",
        DaemonHocon.Load(Path.Combine(AppContext.BaseDirectory, "hocon"), _dir.Combine("work"), null, "WARNING", journalKeyFile: _files.KeyPath));

    /// <summary>Records the export with the first key, then gives the journal another key: its records no longer open.</summary>
    private async Task RecordThenLoseTheKeyAsync()
    {
        var first = NewSystem();
        try
        {
            var service = first.ActorOf(BlockServiceActor.Props(PersistenceId, new BlobCacheRegistry(), waitForRun: false));
            await UntilAsync(service, "serving");
            var r = Record;
            var result = await service.Ask<BlockServiceResult>(new ExportBlockDevice(r.Name, r.Source, r.Config, null, r.Address), Wait);
            Assert.True(result.Succeeded, result.Message);
        }
        finally
        {
            await first.Terminate().WaitAsync(Wait);
        }

        SqliteConnection.ClearAllPools();
        File.WriteAllBytes(_files.KeyPath, System.Security.Cryptography.RandomNumberGenerator.GetBytes(JournalSeal.KeySize));
    }

    [Fact]
    public async Task Unreadable_journal_serves_nothing_refuses_changes_and_leaves_the_handoff_to_the_journal()
    {
        await RecordThenLoseTheKeyAsync();
        var system = NewSystem();
        try
        {
            var service = system.ActorOf(BlockServiceActor.Props(PersistenceId, new BlobCacheRegistry(), waitForRun: false));
            BlockExportList list = await UntilAsync(service, "unavailable");
            Assert.Empty(list.Exports);
            Assert.False(File.Exists(Socket), "an unreadable journal's export is served");

            var refused = await service.Ask<BlockServiceResult>(new ExportBlockDevice("other", Record.Source, Record.Config, null, _dir.Combine("o.nbd")), Wait);
            Assert.Equal(BlockErrorKind.Failed, refused.Error);
            Assert.Contains("unavailable", refused.Message);
            Assert.False(File.Exists(_dir.Combine("o.nbd")));

            // Default, not empty: the handoff state leaves the exports out and a successor reads its own journal.
            var records = await service.Ask<BlockExportRecords>(GetBlockExportRecords.Instance, Wait);
            Assert.True(records.Exports.IsDefault);
        }
        finally
        {
            await system.Terminate().WaitAsync(Wait);
        }
    }

    [Fact]
    public async Task A_takeovers_table_is_served_over_an_unreadable_journal_handed_on_and_changes_are_refused_at_once()
    {
        await RecordThenLoseTheKeyAsync();
        var system = NewSystem();
        try
        {
            // A successor: the handoff state's table arrives, then the daemon runs.
            var service = system.ActorOf(BlockServiceActor.Props(PersistenceId, new BlobCacheRegistry(), waitForRun: true));
            service.Tell(new RestoreBlockExports([Record]));
            service.Tell(BlockServiceMayServe.Instance);
            BlockExportList list = await UntilAsync(service, "unrecorded");
            Assert.Equal("serving", Assert.Single(list.Exports).State);

            // Served for real: a client reads the fixture's first block.
            using (var client = new NbdTestClient(Socket))
            {
                client.Greet();
                Assert.Equal(1u, client.Go("img"));
                client.SendRequest(0, 1, 0, 4096);
                Assert.Equal((0u, 1ul), client.ReceiveSimpleReply());
                Assert.Equal(UpstreamBlockImage.ExpectedDevice.AsSpan(0, 4096).ToArray(), client.Receive(4096));
            }

            // Changes are refused at once (Ask's own timeout would be the hang), and change nothing.
            var added = await service.Ask<BlockServiceResult>(new ExportBlockDevice("other", Record.Source, Record.Config, null, _dir.Combine("o.nbd")), Wait);
            Assert.Equal(BlockErrorKind.Failed, added.Error);
            Assert.Contains("cannot be read", added.Message);
            var removed = await service.Ask<BlockServiceResult>(new UnexportBlockDevice("img"), Wait);
            Assert.Equal(BlockErrorKind.Failed, removed.Error);
            Assert.True(File.Exists(Socket));
            Assert.False(File.Exists(_dir.Combine("o.nbd")));

            // The next sendfd carries the table on.
            var records = await service.Ask<BlockExportRecords>(GetBlockExportRecords.Instance, Wait);
            Assert.Equal(["img"], records.Exports.Select(e => e.Name));

            // No journal is restarted over and over: once the unreadable one stopped, none is alive.
            await Task.Delay(500);
            Assert.Empty(await LiveJournalsAsync(system, service));
        }
        finally
        {
            await system.Terminate().WaitAsync(Wait);
        }
    }

    /// <summary>The names of the service's journal children seen alive over a second (sampled ten times).</summary>
    private static async Task<HashSet<string>> LiveJournalsAsync(ActorSystem system, IActorRef service)
    {
        var probe = new Akka.TestKit.TestProbe(system, new Akka.TestKit.Xunit2.XunitAssertions());
        var seen = new HashSet<string>();
        for (int sample = 0; sample < 10; sample++)
        {
            system.ActorSelection(service.Path / "journal-*").Tell(new Identify(sample), probe.Ref);
            foreach (var identity in probe.ReceiveWhile(TimeSpan.FromMilliseconds(100), m => m as ActorIdentity))
                if (identity?.Subject is { } journal) seen.Add(journal.Path.Name);
            await Task.Delay(10);
        }

        return seen;
    }

    private static async Task<BlockExportList> UntilAsync(IActorRef service, string state)
    {
        var deadline = DateTime.UtcNow + Wait;
        while (true)
        {
            var list = await service.Ask<BlockExportList>(ListBlockExports.Instance, Wait);
            if (list.State == state) return list;
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"the block service stayed '{list.State}', not '{state}'");
            await Task.Delay(50);
        }
    }

    public void Dispose()
    {
        SqliteConnection.ClearAllPools();
        _dir.Dispose();
    }
}
