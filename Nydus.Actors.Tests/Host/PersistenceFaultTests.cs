using System.Diagnostics;
using System.Text;
using System.Text.Json;
using Microsoft.Data.Sqlite;
using Nydus.Actors.Tests.Mounts;
using Nydus.Actors.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace Nydus.Actors.Tests.Host;

/// <summary>
/// Fault injection into the daemon's durable state (issue 16): a full disk and a read-only work dir while mounts are
/// persisted, a journal damaged at random points, a daemon killed mid-write, secrets and file modes at rest. Real
/// nydusd processes, a real tmpfs as work dir, real SQLite files; every mount the tests make is taken back.
/// </summary>
public sealed class PersistenceFaultTests(ITestOutputHelper output)
{
    private static readonly TimeSpan ExitTimeout = TimeSpan.FromSeconds(90);

    // ---- disk full, read-only ----

    [FuseFact]
    public async Task Disk_full_while_persisting_answers_507_changes_nothing_and_every_mount_keeps_serving()
    {
        using var dir = new TempDir("pfull");
        var a = SmallImage.Make(dir.Path, "a", seed: 31);
        var b = SmallImage.Make(dir.Path, "b", seed: 32);
        var config = SmallImage.Config(dir.Path);
        var id = "pfull-" + Guid.NewGuid().ToString("N")[..8];
        using var tmpfs = SmallTmpfs.Mount(dir.Combine("work"), sizeKiB: 2048);

        await using (var daemon = await NydusdApiDaemon.StartAsync(dir, id))
        {
            Assert.Equal(204, (await daemon.MountAsync("/a", a.Image, config)).Status);
            tmpfs.Fill();

            var (status, body) = await daemon.MountAsync("/b", b.Image, config);
            output.WriteLine($"POST /b on a full disk: {status} {body}");
            Assert.Equal(507, status);
            Assert.Contains("full", body, StringComparison.OrdinalIgnoreCase);
            (status, body) = await daemon.MountAsync("/a", b.Image, config, method: "PUT");
            output.WriteLine($"PUT /a on a full disk: {status} {body}");
            Assert.Equal(507, status);
            (status, body) = await daemon.UmountAsync("/a");
            output.WriteLine($"DELETE /a on a full disk: {status} {body}");
            Assert.Equal(507, status);

            // Nothing changed: /a serves, /b does not exist, the daemon runs.
            Assert.False(daemon.Process.HasExited, daemon.Process.Output);
            Assert.Equal(["/a"], await daemon.BackendMountpointsAsync());
            a.AssertServedAt(Path.Combine(daemon.MountPoint, "a"));
            Assert.False(Directory.Exists(Path.Combine(daemon.MountPoint, "b")));

            // With space again the same request works.
            tmpfs.Free();
            Assert.Equal(204, (await daemon.MountAsync("/b", b.Image, config)).Status);
            b.AssertServedAt(Path.Combine(daemon.MountPoint, "b"));
            await daemon.StopAsync();
        }

        // The next start finds exactly what was recorded.
        await using var next = await NydusdApiDaemon.StartAsync(dir, id, generation: 1);
        Assert.Equal(["/a", "/b"], await next.BackendMountpointsAsync());
        a.AssertServedAt(Path.Combine(next.MountPoint, "a"));
        b.AssertServedAt(Path.Combine(next.MountPoint, "b"));
    }

    /// <summary>A work dir that went read-only (as a filesystem does after I/O errors; the kernel refuses to remount
    /// one read-only while the journal is open for writing, so it turns read-only between two runs): the daemon serves
    /// what it recorded and refuses changes, naming the cause.</summary>
    [FuseFact]
    public async Task A_read_only_work_dir_serves_what_was_recorded_and_answers_changes_with_a_clear_error()
    {
        using var dir = new TempDir("pro");
        var a = SmallImage.Make(dir.Path, "a", seed: 33);
        var b = SmallImage.Make(dir.Path, "b", seed: 34);
        var config = SmallImage.Config(dir.Path);
        var id = "pro-" + Guid.NewGuid().ToString("N")[..8];
        using var tmpfs = SmallTmpfs.Mount(dir.Combine("work"), sizeKiB: 4096);
        await using (var first = await NydusdApiDaemon.StartAsync(dir, id))
        {
            Assert.Equal(204, (await first.MountAsync("/a", a.Image, config)).Status);
            await first.StopAsync();
        }
        tmpfs.SetReadOnly(true);

        await using var daemon = await NydusdApiDaemon.StartAsync(dir, id, generation: 1);
        Assert.Equal(["/a"], await daemon.BackendMountpointsAsync());
        a.AssertServedAt(Path.Combine(daemon.MountPoint, "a"));

        var (status, body) = await daemon.MountAsync("/b", b.Image, config);
        output.WriteLine($"POST /b on a read-only work dir: {status} {body}");
        Assert.Equal(500, status);
        Assert.Contains("read", body, StringComparison.OrdinalIgnoreCase);
        Assert.Contains("journal", body, StringComparison.OrdinalIgnoreCase);
        Assert.False(daemon.Process.HasExited, daemon.Process.Output);
        Assert.Equal(["/a"], await daemon.BackendMountpointsAsync());
        a.AssertServedAt(Path.Combine(daemon.MountPoint, "a"));

        tmpfs.SetReadOnly(false);
        Assert.Equal(204, (await daemon.MountAsync("/b", b.Image, config)).Status);
        b.AssertServedAt(Path.Combine(daemon.MountPoint, "b"));
    }

    [FuseFact]
    public async Task A_start_on_a_full_disk_fails_clearly_and_takes_its_mount_back()
    {
        using var dir = new TempDir("pstart");
        using var tmpfs = SmallTmpfs.Mount(dir.Combine("work"), sizeKiB: 1024);
        tmpfs.Fill();
        var mountPoint = dir.Combine("mnt");
        Directory.CreateDirectory(mountPoint);
        try
        {
            var (code, text) = await RunToExitAsync(["--apisock", dir.Combine("api.sock"), "--id", "pstart", "--work-dir", tmpfs.Path, "-M", mountPoint]);
            Assert.NotEqual(0, code);
            Assert.Contains("full", text, StringComparison.OrdinalIgnoreCase);
            Assert.DoesNotContain("is RUNNING", text);
            Assert.False(NydusdMount.IsListedInMounts(mountPoint), "a failed start leaves no FUSE mount behind");
        }
        finally
        {
            NydusdMount.DetachIfMounted(mountPoint);
        }
    }

    // ---- damaged journal ----

    public enum Damage
    {
        ZeroLength,
        TruncatedInHeader,
        TruncatedMidFile,
        RandomBytes,
        NotADatabase,
    }

    /// <summary>
    /// A journal damaged at a (seeded) random point is either refused in one attempt, naming the file and what to do,
    /// with no FUSE mount left behind, or (damage in unused space) read whole. Never started with fewer mounts.
    /// <c>--journal-repair</c> then moves the damaged files aside and the next start works.
    /// </summary>
    [FuseTheory]
    [InlineData(Damage.ZeroLength, 1)]
    [InlineData(Damage.TruncatedInHeader, 2)]
    [InlineData(Damage.TruncatedMidFile, 3)]
    [InlineData(Damage.RandomBytes, 4)]
    [InlineData(Damage.RandomBytes, 5)]
    [InlineData(Damage.NotADatabase, 6)]
    public async Task A_damaged_journal_is_refused_in_one_attempt_and_journal_repair_keeps_it_aside(Damage damage, int seed)
    {
        using var dir = new TempDir("pdmg");
        var a = SmallImage.Make(dir.Path, "a", seed: 40 + seed);
        var b = SmallImage.Make(dir.Path, "b", seed: 50 + seed);
        var config = SmallImage.Config(dir.Path);
        var id = "pdmg-" + Guid.NewGuid().ToString("N")[..8];
        await using (var first = await NydusdApiDaemon.StartAsync(dir, id))
        {
            Assert.Equal(204, (await first.MountAsync("/a", a.Image, config)).Status);
            Assert.Equal(204, (await first.MountAsync("/b", b.Image, config)).Status);
            await first.StopAsync();
        }

        var journal = dir.Combine("work", "journal.db");
        var original = File.ReadAllBytes(journal);
        DamageFile(journal, damage, new Random(seed));
        var mountPoint = dir.Combine("mnt");
        var args = new[] { "--apisock", dir.Combine("api-1.sock"), "--id", id, "--work-dir", dir.Combine("work"), "-M", mountPoint };
        await using (var second = NydusdProcess.Start(args))
        {
            try
            {
                await second.WaitForStateAsync(args[1], "RUNNING", TimeSpan.FromSeconds(60));
                // Started: the damage hit space nothing reads, so the whole table must be there.
                output.WriteLine($"{damage}/{seed}: damage not detectable, journal read whole");
                using var api = new Nydus.Actors.Api.ApiClient(args[1]);
                var (_, info) = await api.SendAsync("GET", "/api/v1/daemon");
                var mounted = JsonDocument.Parse(info).RootElement.GetProperty("backend_collection").EnumerateObject().Select(p => p.Name).Order().ToArray();
                Assert.Equal(["/a", "/b"], mounted);
                Assert.NotEqual(Damage.ZeroLength, damage);
                Assert.NotEqual(Damage.NotADatabase, damage);
                return;
            }
            catch (InvalidOperationException)
            {
                // It exited: checked below.
            }
            finally
            {
                if (!second.HasExited) second.Signal(NydusdProcess.SIGTERM);
                await second.WaitForExitAsync(ExitTimeout);
                NydusdMount.DetachIfMounted(mountPoint);
            }
            var text = second.Output;
            output.WriteLine($"{damage}/{seed}: refused:\n{text}");
            Assert.NotEqual(0, await second.WaitForExitAsync(ExitTimeout));
            Assert.Contains(journal, text);
            Assert.Contains("--journal-repair", text);
            Assert.DoesNotContain("is RUNNING", text);
            // One attempt, not a storm of retries and stack traces.
            Assert.True(text.Split('\n').Length < 60, $"{text.Split('\n').Length} lines of output");
            Assert.DoesNotContain("   at ", text);
        }
        Assert.False(NydusdMount.IsListedInMounts(mountPoint), "a failed start leaves no FUSE mount behind");
        var damaged = File.ReadAllBytes(journal);

        // --journal-repair keeps the damaged file aside, byte for byte, and starts on a fresh journal.
        await using (var repaired = await NydusdApiDaemon.StartAsync(dir, id, 2, "--journal-repair"))
        {
            Assert.Contains("quarantine", repaired.Process.Output);
            Assert.Empty(await repaired.BackendMountpointsAsync());
            var kept = Directory.GetFiles(dir.Combine("work", "quarantine"), "journal.db", SearchOption.AllDirectories);
            Assert.Single(kept);
            Assert.Equal(damaged, File.ReadAllBytes(kept[0]));
            Assert.False(original.AsSpan().SequenceEqual(damaged), "the test damaged nothing: the journal equals the original");
            Assert.Equal(204, (await repaired.MountAsync("/a", a.Image, config)).Status);
            await repaired.StopAsync();
        }
        await using var after = await NydusdApiDaemon.StartAsync(dir, id, 3);
        Assert.Equal(["/a"], await after.BackendMountpointsAsync());
        a.AssertServedAt(Path.Combine(after.MountPoint, "a"));
    }

    [FuseFact]
    public async Task An_undecodable_event_is_refused_naming_it_and_journal_repair_starts_again()
    {
        using var dir = new TempDir("pevt");
        var a = SmallImage.Make(dir.Path, "a", seed: 61);
        var config = SmallImage.Config(dir.Path);
        var id = "pevt-" + Guid.NewGuid().ToString("N")[..8];
        await using (var first = await NydusdApiDaemon.StartAsync(dir, id))
        {
            Assert.Equal(204, (await first.MountAsync("/a", a.Image, config)).Status);
            await first.StopAsync();
        }
        var journal = dir.Combine("work", "journal.db");
        // A structurally sound database whose mount event no longer decodes.
        using (var connection = new SqliteConnection($"Data Source={journal};Pooling=False"))
        {
            connection.Open();
            using var update = connection.CreateCommand();
            update.CommandText = "UPDATE journal SET message = X'7B226D6F756E74223A' WHERE manifest LIKE 'FilesystemMounted%'";
            Assert.Equal(1, update.ExecuteNonQuery());
        }

        var mountPoint = dir.Combine("mnt");
        try
        {
            var (code, text) = await RunToExitAsync(["--apisock", dir.Combine("api-1.sock"), "--id", id, "--work-dir", dir.Combine("work"), "-M", mountPoint]);
            output.WriteLine(text);
            Assert.NotEqual(0, code);
            Assert.Contains(journal, text);
            Assert.Contains("--journal-repair", text);
            Assert.DoesNotContain("is RUNNING", text);
            Assert.True(text.Split('\n').Length < 60, $"{text.Split('\n').Length} lines of output");
            Assert.False(NydusdMount.IsListedInMounts(mountPoint), "a failed start leaves no FUSE mount behind");
        }
        finally
        {
            NydusdMount.DetachIfMounted(mountPoint);
        }

        await using var repaired = await NydusdApiDaemon.StartAsync(dir, id, 2, "--journal-repair");
        Assert.Empty(await repaired.BackendMountpointsAsync());
        Assert.Single(Directory.GetFiles(dir.Combine("work", "quarantine"), "journal.db", SearchOption.AllDirectories));
    }

    // ---- killed mid-write ----

    [FuseFact]
    public async Task A_daemon_killed_while_persisting_mounts_starts_again_with_what_it_recorded()
    {
        using var dir = new TempDir("pkill");
        var images = Enumerable.Range(0, 6).Select(i => SmallImage.Make(dir.Path, $"i{i}", seed: 70 + i, files: 3)).ToArray();
        var config = SmallImage.Config(dir.Path);
        var id = "pkill-" + Guid.NewGuid().ToString("N")[..8];
        await using (var first = await NydusdApiDaemon.StartAsync(dir, id))
        {
            Assert.Equal(204, (await first.MountAsync("/i0", images[0].Image, config)).Status);
            // Mounts in flight, then SIGKILL while the journal is being written.
            var inFlight = images.Skip(1).Select((image, i) => first.MountAsync($"/i{i + 1}", image.Image, config)).ToArray();
            await Task.Delay(300);
            first.Process.Signal(NydusdProcess.SIGKILL);
            await first.Process.WaitForExitAsync(ExitTimeout);
            foreach (var t in inFlight)
            {
                try { await t; } catch (Exception e) when (e is IOException or HttpRequestException or TaskCanceledException) { }
            }
            NydusdMount.DetachIfMounted(first.MountPoint);
        }

        await using var next = await NydusdApiDaemon.StartAsync(dir, id, generation: 1);
        var restored = await next.BackendMountpointsAsync();
        output.WriteLine($"restored after SIGKILL: {string.Join(", ", restored)}");
        Assert.Contains("/i0", restored);
        foreach (var mountpoint in restored)
            images[int.Parse(mountpoint[2..])].AssertServedAt(next.MountPoint + mountpoint);
        Assert.DoesNotContain("could not be mounted again", next.Process.Output);
    }

    // ---- secrets and modes at rest ----

    [FuseFact]
    public async Task Secrets_given_to_the_daemon_are_in_no_file_it_writes_and_state_is_owner_only()
    {
        using var dir = new TempDir("psec");
        var a = SmallImage.Make(dir.Path, "a", seed: 81);
        const string password = "pw-Zq81s3cr3t";
        var auth = Convert.ToBase64String(Encoding.UTF8.GetBytes("robot:" + password));
        const string token = "tok-9f8e7d6c5b4a-SECRET";
        // A registry backend (never reached: a plain EROFS image holds its data) with basic auth and a token.
        var config = "{\"version\":2,\"backend\":{\"type\":\"registry\",\"registry\":{\"scheme\":\"http\",\"host\":\"127.0.0.1:9\","
                     + "\"repo\":\"lib/app\",\"auth\":\"" + auth + "\",\"registry_token\":\"" + token + "\"}},"
                     + "\"cache\":{\"type\":\"blobcache\",\"filecache\":{\"work_dir\":" + NydusdMount.Json(dir.Combine("cache")) + "}},"
                     + "\"rafs\":{\"mode\":\"direct\"}}";
        var id = "psec-" + Guid.NewGuid().ToString("N")[..8];
        // The log dir is nydusd's to make (0700), the log file in it 0600.
        var logFile = dir.Combine("logs", "nydusd.log");
        var consoles = new StringBuilder();
        await using (var first = await NydusdApiDaemon.StartAsync(dir, id, 0, "--log-file", logFile, "--log-level", "debug"))
        {
            Assert.Equal(204, (await first.MountAsync("/a", a.Image, config)).Status);
            await first.StopAsync();
            consoles.Append(first.Process.Output);
        }
        // A restart must mount it again with its credentials, so they are kept, just not in plain text.
        await using (var second = await NydusdApiDaemon.StartAsync(dir, id, 1, "--log-file", logFile, "--log-level", "debug"))
        {
            Assert.Equal(["/a"], await second.BackendMountpointsAsync());
            a.AssertServedAt(Path.Combine(second.MountPoint, "a"));
            await second.StopAsync();
            consoles.Append(second.Process.Output);
        }

        var written = new[] { dir.Combine("work"), dir.Combine("logs"), dir.Combine("cache") }
            .Where(Directory.Exists)
            .SelectMany(d => Directory.EnumerateFiles(d, "*", SearchOption.AllDirectories))
            .ToList();
        Assert.Contains(written, f => Path.GetFileName(f) == "journal.db");
        Assert.Contains(written, f => Path.GetFileName(f).StartsWith("nydusd", StringComparison.Ordinal));
        foreach (var file in written)
        {
            var bytes = File.ReadAllBytes(file);
            foreach (var secret in new[] { auth, password, token })
                Assert.True(bytes.AsSpan().IndexOf(Encoding.UTF8.GetBytes(secret)) < 0, $"{file} holds the secret {secret}");
        }
        foreach (var secret in new[] { auth, password, token })
            Assert.DoesNotContain(secret, consoles.ToString());

        // The work dir and every state file in it are the owner's alone.
        var work = dir.Combine("work");
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(work));
        foreach (var file in Directory.EnumerateFiles(work, "*", SearchOption.AllDirectories))
            Assert.True((File.GetUnixFileMode(file) & (UnixFileMode)0b000_111_111) == 0, $"{file} is {File.GetUnixFileMode(file)}");
        // So are the logs: they name every mount's source and paths. (Rolled files: the log rotation test.)
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(dir.Combine("logs")));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(logFile));
        Assert.All(Directory.GetFiles(dir.Combine("logs")), f => Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(f)));
    }

    /// <summary>Waits (60 s at most) for an agent's API socket; fails with the agent's output if it never comes.</summary>
    private static async Task WaitForAgentSocketAsync(NydusdProcess agent, string socket)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (!File.Exists(socket) && !agent.HasExited && DateTime.UtcNow < deadline) await Task.Delay(50);
        Assert.True(File.Exists(socket), agent.Output);
    }

    // ---- the node agent's journal ----

    [Fact]
    public async Task The_agent_makes_its_state_owner_only_and_refuses_a_damaged_journal_naming_it()
    {
        using var dir = new TempDir("pagent");
        var stateDir = dir.Combine("state");
        var socket = dir.Combine("agent.sock");
        await using (var agent = NydusdProcess.Start("agent", "--state-dir", stateDir, "--sock", socket))
        {
            await WaitForAgentSocketAsync(agent, socket);
            agent.Signal(NydusdProcess.SIGTERM);
            Assert.Equal(0, await agent.WaitForExitAsync(ExitTimeout));
        }
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(stateDir));
        foreach (var db in new[] { "journal.db", "snapshots.db" })
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(stateDir, db)));

        var journal = Path.Combine(stateDir, "journal.db");
        DamageFile(journal, Damage.TruncatedInHeader, new Random(7));
        var (code, text) = await RunToExitAsync(["agent", "--state-dir", stateDir, "--sock", socket]);
        output.WriteLine(text);
        Assert.Equal(1, code);
        Assert.Contains(journal, text);
        Assert.Contains("--journal-repair", text);

        File.Delete(socket);
        await using var repaired = NydusdProcess.Start("agent", "--state-dir", stateDir, "--sock", socket, "--journal-repair");
        await WaitForAgentSocketAsync(repaired, socket);
        Assert.Single(Directory.GetFiles(Path.Combine(stateDir, "quarantine"), "journal.db", SearchOption.AllDirectories));
        repaired.Signal(NydusdProcess.SIGTERM);
        Assert.Equal(0, await repaired.WaitForExitAsync(ExitTimeout));
    }

    [Fact]
    public async Task The_agent_refuses_an_undecodable_event_in_one_line_instead_of_serving_without_its_list()
    {
        using var dir = new TempDir("pagev");
        var stateDir = dir.Combine("state");
        var socket = dir.Combine("agent.sock");
        await using (var agent = NydusdProcess.Start("agent", "--state-dir", stateDir, "--sock", socket))
        {
            await WaitForAgentSocketAsync(agent, socket);
            agent.Signal(NydusdProcess.SIGTERM);
            Assert.Equal(0, await agent.WaitForExitAsync(ExitTimeout));
        }
        // A structurally sound database holding a managed-daemon record that no longer decodes (cut-off JSON under the
        // agent serializer's own manifest and identifier).
        var journal = Path.Combine(stateDir, "journal.db");
        using (var connection = new SqliteConnection($"Data Source={journal};Pooling=False"))
        {
            connection.Open();
            using var insert = connection.CreateCommand();
            insert.CommandText = "INSERT INTO journal (created, deleted, persistence_id, sequence_number, message, manifest, identifier, writer_uuid) "
                                 + $"VALUES (0, 0, 'nydusd-agent', 1, X'7B226964223A', 'AgentDaemonSaved.v1', {Nydus.Actors.Agent.AgentJournalSerializer.Id}, 'test')";
            Assert.Equal(1, insert.ExecuteNonQuery());
        }

        File.Delete(socket);
        var (code, text) = await RunToExitAsync(["agent", "--state-dir", stateDir, "--sock", socket]);
        output.WriteLine(text);
        Assert.Equal(1, code);
        Assert.Contains(journal, text);
        Assert.Contains("cannot be replayed", text);
        Assert.Contains("--journal-repair", text);
        Assert.True(text.Split('\n').Length < 20, $"{text.Split('\n').Length} lines of output");

        await using var repaired = NydusdProcess.Start("agent", "--state-dir", stateDir, "--sock", socket, "--journal-repair");
        await WaitForAgentSocketAsync(repaired, socket);
        repaired.Signal(NydusdProcess.SIGTERM);
        Assert.Equal(0, await repaired.WaitForExitAsync(ExitTimeout));
    }

    // ---- helpers ----

    private static async Task<(int Code, string Output)> RunToExitAsync(string[] args)
    {
        await using var process = NydusdProcess.Start(args);
        try
        {
            return (await process.WaitForExitAsync(ExitTimeout), process.Output);
        }
        catch (TimeoutException)
        {
            // Still running (e.g. it reached RUNNING on a state it should have refused): stop it and report.
            process.Signal(NydusdProcess.SIGTERM);
            await process.WaitForExitAsync(ExitTimeout);
            return (0, process.Output);
        }
    }

    private static void DamageFile(string file, Damage damage, Random random)
    {
        var bytes = File.ReadAllBytes(file);
        switch (damage)
        {
            case Damage.ZeroLength:
                File.WriteAllBytes(file, []);
                break;
            case Damage.TruncatedInHeader:
                File.WriteAllBytes(file, bytes[..random.Next(1, 100)]);
                break;
            case Damage.TruncatedMidFile:
                File.WriteAllBytes(file, bytes[..random.Next(4096, bytes.Length - 1)]);
                break;
            case Damage.RandomBytes:
                // Random points in the parts of the file in use (most of a small SQLite file is zero-filled free
                // space, where damage changes nothing).
                for (int hits = 0, tries = 0; hits < 8 && tries < 100_000; tries++)
                {
                    var at = random.Next(0, bytes.Length - 16);
                    if (!bytes.AsSpan(at, 16).ContainsAnyExcept((byte)0)) continue;
                    random.NextBytes(bytes.AsSpan(at, 16));
                    hits++;
                }
                File.WriteAllBytes(file, bytes);
                break;
            case Damage.NotADatabase:
                random.NextBytes(bytes);
                File.WriteAllBytes(file, bytes);
                break;
        }
        foreach (var side in new[] { file + "-wal", file + "-shm", file + "-journal" }) File.Delete(side);
    }

    /// <summary>A small tmpfs for a work dir, so that the disk can really be full; unmounted on dispose.</summary>
    internal sealed class SmallTmpfs : IDisposable
    {
        private SmallTmpfs(string path) => Path = path;

        public string Path { get; }

        private string FillFile => System.IO.Path.Combine(Path, "fill");

        public static SmallTmpfs Mount(string path, int sizeKiB)
        {
            Directory.CreateDirectory(path);
            Run("mount", "-t", "tmpfs", "-o", $"size={sizeKiB}k,mode=0700", "tmpfs", path);
            return new SmallTmpfs(path);
        }

        /// <summary>Writes until the filesystem says ENOSPC.</summary>
        public void Fill()
        {
            using var stream = new FileStream(FillFile, FileMode.Append);
            var block = new byte[4096];
            try
            {
                while (true) stream.Write(block);
            }
            catch (IOException)
            {
            }
        }

        public void Free() => File.Delete(FillFile);

        public void SetReadOnly(bool readOnly) => Run("mount", "-o", readOnly ? "remount,ro" : "remount,rw", Path);

        public void Dispose()
        {
            if (NydusdMount.IsListedInMounts(Path)) Run("umount", "-l", Path);
        }

        private static void Run(string file, params string[] args)
        {
            var info = new ProcessStartInfo(file) { RedirectStandardError = true, UseShellExecute = false };
            foreach (var arg in args) info.ArgumentList.Add(arg);
            using var process = Process.Start(info)!;
            var error = process.StandardError.ReadToEnd();
            if (!process.WaitForExit(30_000)) throw new TimeoutException($"{file} {string.Join(' ', args)} did not finish");
            if (process.ExitCode != 0) throw new IOException($"{file} {string.Join(' ', args)} failed: {error}");
        }
    }
}
