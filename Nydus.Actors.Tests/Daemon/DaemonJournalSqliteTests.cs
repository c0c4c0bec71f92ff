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
            var count = DaemonJournalActor.SnapshotInterval + 20;
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
            var last = DaemonJournalActor.SnapshotInterval + 19;
            Assert.Equal(last, record.Mounts[$"/m{last % 7}"].VfsIndex);
        }
        finally
        {
            await again.Terminate().WaitAsync(Wait);
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
            for (int i = 0; i < DaemonJournalActor.SnapshotInterval + 5; i++)
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
