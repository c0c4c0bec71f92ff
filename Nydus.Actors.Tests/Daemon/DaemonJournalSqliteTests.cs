using System.Collections.Immutable;
using Akka.Actor;
using Microsoft.Data.Sqlite;
using Nydus.Actors.Daemon;
using Nydus.Actors.Daemon.Persistence;
using Nydus.Actors.Tests.Support;
using Xunit;

namespace Nydus.Actors.Tests.Daemon;

/// <summary>The one persistence test on a real SQLite file: state written by one actor system is found by the next.</summary>
public sealed class DaemonJournalSqliteTests : IDisposable
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(30);
    private readonly TempDir _workDir = new("journal");

    private ActorSystem NewSystem() => ActorSystem.Create("sqlite-test",
        DaemonHocon.Load(Path.Combine(AppContext.BaseDirectory, "hocon"), _workDir.Path, null, "WARNING"));

    private static MountRecord Mount(string mountpoint, int index) =>
        new(mountpoint, "rafs", $"/images/{index}.boot", "{\"device\":{}}", ImmutableArray.Create("/etc"), index);

    [Fact]
    public async Task Mount_table_survives_a_killed_actor_system()
    {
        var first = NewSystem();
        try
        {
            var journal = first.ActorOf(DaemonJournalActor.Props("nydusd-sqlite", "sqlite"));
            await journal.Ask<Recorded>(new RecordMount(Mount("/a", 1)), Wait);
            await journal.Ask<Recorded>(new RecordMount(Mount("/b", 2)), Wait);
            await journal.Ask<Recorded>(new RecordMount(Mount("/c", 3)), Wait);
            var afterUnmount = await journal.Ask<Recorded>(new RecordUnmount("/b"), Wait);
            Assert.Equal(["/a", "/c"], afterUnmount.Record.Mounts.Keys);
        }
        finally
        {
            // Abrupt: no graceful stop of the journal actor, as when the process dies.
            await first.Terminate().WaitAsync(Wait);
        }

        Assert.True(File.Exists(Path.Combine(_workDir.Path, "journal.db")));
        Assert.True(File.Exists(Path.Combine(_workDir.Path, "snapshots.db")));
        SqliteConnection.ClearAllPools();

        var second = NewSystem();
        try
        {
            var journal = second.ActorOf(DaemonJournalActor.Props("nydusd-sqlite", "sqlite"));
            var record = await journal.Ask<DaemonRecord>(GetDaemonRecord.Instance, Wait);
            Assert.Equal("sqlite", record.DaemonId);
            Assert.Equal(["/a", "/c"], record.Mounts.Keys);
            Assert.Equal(Mount("/c", 3).Source, record.Mounts["/c"].Source);
            Assert.Equal(3, record.Mounts["/c"].VfsIndex);
            Assert.Equal(new[] { "/etc" }, record.Mounts["/a"].PrefetchFiles.ToArray());
            // The first start and this one are both recorded.
            await AwaitAssert(async () =>
                Assert.Equal(2, (await journal.Ask<DaemonRecord>(GetDaemonRecord.Instance, Wait)).StartCount));
        }
        finally
        {
            await second.Terminate().WaitAsync(Wait);
        }
    }

    [Fact]
    public async Task Snapshots_keep_recovery_correct_past_the_interval()
    {
        var system = NewSystem();
        try
        {
            var journal = system.ActorOf(DaemonJournalActor.Props("nydusd-snap", "snap"));
            var count = RecordJournalActor<DaemonRecord>.SnapshotInterval + 20;
            for (var i = 0; i < count; i++)
                await journal.Ask<Recorded>(new RecordMount(Mount($"/m{i % 7}", i)), Wait);
        }
        finally
        {
            await system.Terminate().WaitAsync(Wait);
        }
        SqliteConnection.ClearAllPools();

        // A snapshot row exists in the snapshot file.
        await using (var connection = new SqliteConnection($"Data Source={Path.Combine(_workDir.Path, "snapshots.db")}"))
        {
            await connection.OpenAsync();
            var command = connection.CreateCommand();
            command.CommandText = "SELECT COUNT(*) FROM snapshot";
            Assert.True((long)(await command.ExecuteScalarAsync())! >= 1);
        }

        var again = NewSystem();
        try
        {
            var journal = again.ActorOf(DaemonJournalActor.Props("nydusd-snap", "snap"));
            var record = await journal.Ask<DaemonRecord>(GetDaemonRecord.Instance, Wait);
            Assert.Equal(7, record.Mounts.Count);
            // The last write to /m{(count-1)%7} wins.
            var last = RecordJournalActor<DaemonRecord>.SnapshotInterval + 19;
            Assert.Equal(last, record.Mounts[$"/m{last % 7}"].VfsIndex);
        }
        finally
        {
            await again.Terminate().WaitAsync(Wait);
        }
    }

    [Fact]
    public async Task Block_exports_survive_a_killed_actor_system_past_a_snapshot()
    {
        static BlockExportRecord Export(int i) => new($"e{i % 5}", $"/images/{i}.boot", "{\"device\":{}}", i % 2 == 0 ? null : "/m", $"/run/e{i}.nbd");
        var count = RecordJournalActor<DaemonRecord>.SnapshotInterval + 21;
        var first = NewSystem();
        try
        {
            var (journal, recovered) = await StartBlockJournal(first);
            Assert.Empty((await recovered.WaitAsync(Wait)).Exports);
            for (var i = 0; i < count; i++)
                await journal.Ask<BlockRecorded>(new RecordBlockExport(Export(i)), Wait);
            var after = await journal.Ask<BlockRecorded>(new RecordBlockUnexport("e0"), Wait);
            Assert.Equal(["e1", "e2", "e3", "e4"], after.Record.Exports.Keys);
        }
        finally
        {
            await first.Terminate().WaitAsync(Wait);
        }
        SqliteConnection.ClearAllPools();

        var again = NewSystem();
        try
        {
            var (_, recovered) = await StartBlockJournal(again);
            var record = await recovered.WaitAsync(Wait);
            Assert.Equal(["e1", "e2", "e3", "e4"], record.Exports.Keys);
            // The last write of each name wins: e4 was last written by event count-2 (count-1 = 120 is e0's).
            var last = Enumerable.Range(0, count).Last(i => i % 5 == 4);
            Assert.Equal(Export(last), record.Exports["e4"]);
        }
        finally
        {
            await again.Terminate().WaitAsync(Wait);
        }
    }

    /// <summary>A block journal under a parent that hands on what it recovered (it tells its parent, not an asker).</summary>
    private static async Task<(IActorRef Journal, Task<BlockServiceRecord> Recovered)> StartBlockJournal(ActorSystem system)
    {
        var recovered = new TaskCompletionSource<BlockServiceRecord>(TaskCreationOptions.RunContinuationsAsynchronously);
        var parent = system.ActorOf(Props.Create(() => new BlockJournalParent(recovered)));
        var journal = await parent.Ask<IActorRef>("journal", Wait);
        return (journal, recovered.Task);
    }

    private sealed class BlockJournalParent : ReceiveActor
    {
        public BlockJournalParent(TaskCompletionSource<BlockServiceRecord> recovered)
        {
            var journal = Context.ActorOf(BlockJournalActor.Props("nydusd-sqlite-block"));
            Receive<string>(_ => Sender.Tell(journal));
            Receive<BlockJournalRecovered>(r => recovered.TrySetResult(r.Record));
            Receive<BlockJournalUnreadable>(u => recovered.TrySetException(new InvalidOperationException(u.Description)));
        }
    }

    private static async Task AwaitAssert(Func<Task> assertion)
    {
        var deadline = DateTime.UtcNow + Wait;
        while (true)
        {
            try
            {
                await assertion();
                return;
            }
            catch when (DateTime.UtcNow < deadline)
            {
                await Task.Delay(50);
            }
        }
    }

    [Fact]
    public async Task Mount_configs_are_sealed_at_rest_and_a_wrong_key_is_refused_not_read_as_empty()
    {
        var files = new JournalFiles(_workDir.Path);
        files.CheckOrCreateDatabases([files.JournalPath, files.SnapshotsPath]);
        files.LoadOrCreateKey();
        Assert.Equal(JournalFiles.FileMode, File.GetUnixFileMode(files.KeyPath));
        Assert.Equal(JournalFiles.FileMode, File.GetUnixFileMode(files.JournalPath));
        const string secret = "SECRET-in-the-config-7c1";
        ActorSystem Sealed() => ActorSystem.Create("sealed-test",
            DaemonHocon.Load(Path.Combine(AppContext.BaseDirectory, "hocon"), _workDir.Path, null, "WARNING", journalKeyFile: files.KeyPath));

        var first = Sealed();
        try
        {
            var journal = first.ActorOf(DaemonJournalActor.Props("nydusd-sealed", "sealed"));
            for (int i = 0; i < RecordJournalActor<DaemonRecord>.SnapshotInterval + 5; i++)
                await journal.Ask<Recorded>(new RecordMount(Mount("/a", 1) with { Config = "{\"auth\":\"" + secret + "\"}" }), Wait);
        }
        finally
        {
            await first.Terminate().WaitAsync(Wait);
        }
        SqliteConnection.ClearAllPools();
        foreach (var file in Directory.GetFiles(_workDir.Path))
            Assert.True(File.ReadAllBytes(file).AsSpan().IndexOf(System.Text.Encoding.UTF8.GetBytes(secret)) < 0, $"{file} holds the secret");

        var again = Sealed();
        try
        {
            var journal = again.ActorOf(DaemonJournalActor.Props("nydusd-sealed", "sealed"));
            var record = await journal.Ask<DaemonRecord>(GetDaemonRecord.Instance, Wait);
            Assert.Contains(secret, record.Mounts["/a"].Config);
        }
        finally
        {
            await again.Terminate().WaitAsync(Wait);
        }
        SqliteConnection.ClearAllPools();

        // Another key: the sealed records do not open, and recovery fails instead of answering an empty table.
        File.WriteAllBytes(files.KeyPath, System.Security.Cryptography.RandomNumberGenerator.GetBytes(JournalSeal.KeySize));
        var wrong = Sealed();
        try
        {
            var probe = CreateTestProbeIn(wrong);
            var guard = wrong.ActorOf(Props.Create(() => new GuardParent(probe.Ref)));
            var unreadable = probe.ExpectMsg<DaemonJournalUnreadable>(Wait);
            Assert.Contains("does not open with the key", unreadable.Description);
        }
        finally
        {
            await wrong.Terminate().WaitAsync(Wait);
        }
    }

    private static Akka.TestKit.TestProbe CreateTestProbeIn(ActorSystem system) => new(system, new Akka.TestKit.Xunit2.XunitAssertions());

    /// <summary>Parent of a journal guard that passes on what the guard tells its parent.</summary>
    private sealed class GuardParent : ReceiveActor
    {
        public GuardParent(IActorRef probe)
        {
            Context.ActorOf(DaemonJournalGuard.Props("nydusd-sealed", "sealed"));
            ReceiveAny(m => probe.Forward(m));
        }
    }

    public void Dispose()
    {
        SqliteConnection.ClearAllPools();
        _workDir.Dispose();
    }
}
