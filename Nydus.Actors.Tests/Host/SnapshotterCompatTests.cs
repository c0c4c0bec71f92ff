using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Nydus.Actors.Api;
using Nydus.Actors.Daemon;
using Nydus.Actors.Tests.Support;
using Xunit;

namespace Nydus.Actors.Tests.Host;

/// <summary>
/// What nydus-snapshotter (containerd/nydus-snapshotter) needs from nydusd, against the real binary: the flags its
/// default command line passes, the version block it parses, an API connection that stays open while it is idle,
/// and the log going to --log-file only.
/// </summary>
public sealed class SnapshotterCompatTests(Xunit.Abstractions.ITestOutputHelper output) : IDisposable
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(60);
    private readonly TempDir _dir = new("snap");

    /// <summary>nydus-snapshotter pkg/daemon/daemon.go, GetDaemonGitCommit: it runs `nydusd --version`, takes the
    /// first match of this expression and trims it (Go's RE2 and .NET agree on this pattern).</summary>
    private static readonly Regex SnapshotterGitCommit = new(@"Git Commit:\s*(.+)");

    private static Task<(int Code, string Stdout, string Stderr)> RunRawAsync(params string[] args) => NydusdProcess.RunRawAsync(Wait, args);

    [Theory]
    [InlineData("--version")]
    [InlineData("-V")]
    public async Task Version_block_is_upstreams_and_the_snapshotters_expression_finds_the_commit_the_api_reports(string flag)
    {
        var (code, stdout, stderr) = await RunRawAsync(flag);
        Assert.Equal(0, code);
        Assert.Equal("", stderr);
        // clap prints "nydusd " and the block (which starts with \r), then a newline of its own.
        var block = Regex.Match(stdout,
            "^nydusd \rVersion: \t(?<version>[^\n]+)\nGit Commit: \t(?<commit>[^\n]+)\nBuild Time: \t(?<time>[^\n]+)\nProfile: \t(?<profile>debug|release)\n\\.NET: \t\t[^\n]+\n\n$");
        Assert.True(block.Success, $"not upstream's version block: {JsonSerializer.Serialize(stdout)}");

        var match = SnapshotterGitCommit.Match(stdout);
        Assert.True(match.Success);
        var commit = match.Groups[1].Value.Trim();
        // Built from a git checkout (CI's is a clean clone): a full commit id, never empty or "unknown".
        Assert.Matches("^[0-9a-f]{40}$", commit);
        Assert.True(DateTimeOffset.TryParse(block.Groups["time"].Value, out _), block.Groups["time"].Value);

        // The API reports the same build: the snapshotter compares the two to decide on a hot upgrade.
        var socket = _dir.Combine("api.sock");
        await using var daemon = NydusdProcess.Start("singleton", "--apisock", socket, "--work-dir", _dir.Combine("work"));
        await daemon.WaitForStateAsync(socket, "RUNNING", Wait);
        using var client = new ApiClient(socket);
        var (status, body) = await client.SendAsync("GET", "/api/v1/daemon");
        Assert.Equal(200, status);
        var version = JsonDocument.Parse(body).RootElement.GetProperty("version");
        Assert.Equal(commit, version.GetProperty("git_commit").GetString());
        Assert.Equal(block.Groups["time"].Value, version.GetProperty("build_time").GetString());
        Assert.Equal(block.Groups["version"].Value, version.GetProperty("package_ver").GetString());
        Assert.Equal(block.Groups["profile"].Value, version.GetProperty("profile").GetString());
    }

    [FuseFact]
    public async Task The_snapshotters_default_command_line_is_accepted()
    {
        // pkg/manager/daemon_adaptor.go BuildDaemonCommand for a FUSE daemon with a supervisor, log file and rotation:
        // `fuse --mountpoint M --thread-num N --id ID --config C --bootstrap B --log-level L --log-rotation-size 100
        //  --supervisor S --apisock A --log-file F --failover-policy resend` (flags in the struct's field order).
        // Here without --config/--bootstrap (a daemon for API mounts, the snapshotter's shared mode) and the mount
        // made by the daemon itself, so the command line alone is checked: the daemon must come up RUNNING.
        var mountpoint = _dir.Combine("mnt");
        Directory.CreateDirectory(mountpoint);
        var socket = _dir.Combine("api.sock");
        var logFile = _dir.Combine("logs", "nydusd.log");
        await using var supervisor = SupervisorListener(_dir.Combine("sup.sock"));
        await using var daemon = NydusdProcess.Start("fuse", "--mountpoint", mountpoint, "--thread-num", "2",
            "--id", "snap-" + Guid.NewGuid().ToString("N")[..8], "--log-level", "info", "--log-rotation-size", "100",
            "--supervisor", _dir.Combine("sup.sock"), "--apisock", socket, "--log-file", logFile,
            "--failover-policy", "resend", "--work-dir", _dir.Combine("work"));
        try
        {
            await daemon.WaitForStateAsync(socket, "RUNNING", Wait);
            Assert.Contains("nydusd is RUNNING", await File.ReadAllTextAsync(logFile));
        }
        finally
        {
            daemon.Signal(NydusdProcess.SIGTERM);
            await daemon.WaitForExitAsync(Wait);
        }
        Assert.Equal("", daemon.Output);
    }

    /// <summary>A bound supervisor socket nobody talks to (the daemon only connects to it on sendfd).</summary>
    private static SocketOwner SupervisorListener(string path)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        socket.Bind(new UnixDomainSocketEndPoint(path));
        socket.Listen();
        return new SocketOwner(socket);
    }

    private sealed class SocketOwner(Socket socket) : IAsyncDisposable
    {
        public ValueTask DisposeAsync()
        {
            socket.Dispose();
            return ValueTask.CompletedTask;
        }
    }

    [FuseFact]
    public async Task Log_file_rotates_at_the_given_size_in_upstreams_line_format_and_nothing_goes_to_the_console()
    {
        var mountpoint = _dir.Combine("mnt");
        Directory.CreateDirectory(mountpoint);
        var socket = _dir.Combine("api.sock");
        var logDir = _dir.Combine("logs");
        await using var daemon = NydusdProcess.Start("--mountpoint", mountpoint, "--apisock", socket, "--work-dir", _dir.Combine("work"),
            "--log-file", Path.Combine(logDir, "nydusd"), "--log-rotation-size", "1", "--log-level", "debug");
        try
        {
            await daemon.WaitForStateAsync(socket, "RUNNING", Wait);
            // Every refused mount is logged with its source path. The path stays within PATH_MAX (a longer one is
            // refused before any work, with a shortened quote), so it takes a few hundred requests to write 2 MiB:
            // sent until the log has rolled twice, at most 3000.
            using var client = new ApiClient(socket);
            var longPath = string.Concat(Enumerable.Repeat("/missing", 490));
            for (int i = 0; i < 3000 && Directory.GetFiles(logDir).Length < 3; i++)
            {
                var body = JsonSerializer.Serialize(new { source = longPath + i, fs_type = "rafs", config = "{}" });
                var (status, _) = await client.SendAsync("POST", "/api/v1/mount?mountpoint=/m", body);
                Assert.Equal(400, status);
            }
            Assert.Equal(200, (await client.SendAsync("GET", "/api/v1/daemon")).Status);
        }
        finally
        {
            daemon.Signal(NydusdProcess.SIGTERM);
            Assert.Equal(0, await daemon.WaitForExitAsync(Wait));
        }

        // ".log" added to a name without extension, as upstream; rolled files beside it, each at most the size asked
        // (plus the one event that crossed it).
        var files = Directory.GetFiles(logDir).Select(Path.GetFileName).Order(StringComparer.Ordinal).ToArray();
        output.WriteLine(string.Join(", ", files.Select(f => $"{f} {new FileInfo(Path.Combine(logDir, f!)).Length}")));
        Assert.Contains("nydusd.log", files);
        Assert.True(files.Length >= 3, $"expected the log to roll at least twice: {string.Join(", ", files)}");
        Assert.All(files, f => Assert.Matches(@"^nydusd(_\d{3})?\.log$", f));
        Assert.All(files, f => Assert.True(new FileInfo(Path.Combine(logDir, f!)).Length <= 1024 * 1024 + 128 * 1024, f));
        // Rolled files too are created owner-only, whatever the umask (Serilog alone makes them 0644 under umask 022).
        Assert.All(files, f => Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(logDir, f!))));

        var upstreamLine = new Regex(@"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6} [+-]\d\d:\d\d\] (TRACE|DEBUG|INFO|WARN|ERROR) ");
        var all = files.Select(f => File.ReadAllText(Path.Combine(logDir, f!))).ToArray();
        var lines = all.SelectMany(t => t.Split('\n', StringSplitOptions.RemoveEmptyEntries)).ToArray();
        Assert.All(lines, l => Assert.Matches(upstreamLine, l));
        Assert.Contains(lines, l => Regex.IsMatch(l, @"\] INFO nydusd is RUNNING$"));
        Assert.Contains(lines, l => Regex.IsMatch(l, @"\] WARN \[\w+:0\] .*/missing/missing"));
        // The newest file holds the last words.
        Assert.Contains("nydusd exits", all[^1]);
        Assert.Equal("", daemon.Output);
    }

    [Fact]
    public async Task Log_rotation_size_without_a_log_file_is_accepted_and_says_it_does_nothing()
    {
        // The snapshotter passes --log-rotation-size even when it keeps the log on stdout (log_to_stdout).
        var socket = _dir.Combine("api.sock");
        await using var daemon = NydusdProcess.Start("singleton", "--apisock", socket, "--work-dir", _dir.Combine("work"), "--log-rotation-size", "100");
        await daemon.WaitForStateAsync(socket, "RUNNING", Wait);
        Assert.Contains("--log-rotation-size 100 has no effect without --log-file", daemon.Output);
        var (code, text) = await NydusdProcess.RunAsync(Wait, "singleton", "--log-rotation-size", "-1");
        Assert.Equal(2, code);
        Assert.Contains("invalid --log-rotation-size -1", text);
    }

    [Fact]
    public async Task Api_keeps_idle_connections_open_and_many_idle_ones_do_not_starve_a_new_request()
    {
        // In process, the setting itself: no keep-alive limit unless one is configured.
        var inProc = _dir.Combine("inproc.sock");
        await using (var server = await ApiServer.StartAsync(inProc, routes => routes.Map("GET", "/ping", _ => Task.FromResult(ApiResult.Ok(new { pong = true })))))
            Assert.Equal(ApiServer.NoIdleLimit, server.KeepAliveTimeout);

        // The real daemon. With a 1 s idle timeout configured (HOCON from $NYDUSD_HOCON), an idle connection is closed:
        // this is how Kestrel's old default of 130 s showed, and it proves the check below can see a hang-up.
        var hocon = _dir.Combine("short-idle.conf");
        await File.WriteAllTextAsync(hocon, "nydus.api.idle-timeout = 1s\n");
        var shortSocket = _dir.Combine("short.sock");
        await using (var shortIdle = NydusdProcess.StartWith(null, new Dictionary<string, string?> { ["NYDUSD_HOCON"] = hocon },
                         "singleton", "--apisock", shortSocket, "--work-dir", _dir.Combine("work-short")))
        {
            await shortIdle.WaitForStateAsync(shortSocket, "RUNNING", Wait);
            Assert.Contains($"HOCON from {hocon}", shortIdle.Output);
            using var connection = await RawHttpConnection.ConnectAsync(shortSocket, Wait);
            Assert.Equal(200, await connection.GetAsync("/api/v1/daemon", Wait));
            Assert.True(await connection.WaitForCloseAsync(TimeSpan.FromSeconds(30)), "a 1 s idle timeout did not close the connection");
        }

        // Default: no limit. A connection idle for 4 s (four times the short limit) is still open and still serves.
        var socket = _dir.Combine("api.sock");
        await using var daemon = NydusdProcess.Start("singleton", "--apisock", socket, "--work-dir", _dir.Combine("work"));
        await daemon.WaitForStateAsync(socket, "RUNNING", Wait);
        using var held = await RawHttpConnection.ConnectAsync(socket, Wait);
        Assert.Equal(200, await held.GetAsync("/api/v1/daemon", Wait));
        // And one that connects and says nothing at first (Kestrel's own "infinite" closed such a one within a second).
        using var late = await RawHttpConnection.ConnectAsync(socket, Wait);

        // 500 more clients connect and never send a byte (the snapshotter holds one per daemon; here far more).
        var idle = new List<RawHttpConnection>();
        try
        {
            for (int i = 0; i < 500; i++) idle.Add(await RawHttpConnection.ConnectAsync(socket, Wait));
            // A new client is still answered (bounded wait: the ApiClient's own timeout).
            using var fresh = new ApiClient(socket, TimeSpan.FromSeconds(30));
            Assert.Equal(200, (await fresh.SendAsync("GET", "/api/v1/daemon")).Status);

            await Task.Delay(TimeSpan.FromSeconds(4));
            Assert.False(held.IsClosedByServer(), "the server closed an idle connection");
            Assert.Equal(200, await held.GetAsync("/api/v1/daemon", Wait));
            Assert.False(late.IsClosedByServer(), "the server closed a connection that had not sent its first request yet");
            Assert.Equal(200, await late.GetAsync("/api/v1/daemon", Wait));
            Assert.DoesNotContain(idle, c => c.IsClosedByServer());
            // One of the silent ones can still make its first request.
            Assert.Equal(200, await idle[250].GetAsync("/api/v1/daemon", Wait));
        }
        finally
        {
            idle.ForEach(c => c.Dispose());
        }
    }

    [Fact]
    public async Task Systemd_hears_ready_watchdog_and_stopping_on_its_notify_socket()
    {
        var notifyPath = _dir.Combine("notify.sock");
        using var notify = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        notify.Bind(new UnixDomainSocketEndPoint(notifyPath));
        var socket = _dir.Combine("api.sock");
        await using var daemon = NydusdProcess.StartWith(null, new Dictionary<string, string?>
        {
            ["NOTIFY_SOCKET"] = notifyPath,
            // WatchdogSec=1: nydusd pings every 0.5 s while its daemon actor answers.
            ["WATCHDOG_USEC"] = "1000000",
            ["WATCHDOG_PID"] = null,
        }, "singleton", "--apisock", socket, "--work-dir", _dir.Combine("work"));

        var ready = await ReceiveUntilAsync(notify, m => m.Contains("READY=1"));
        Assert.Contains($"MAINPID={daemon.Pid}", ready);
        Assert.Contains("STATUS=RUNNING", ready);
        // The API answers once systemd was told it is ready.
        using (var client = new ApiClient(socket))
            Assert.Equal(200, (await client.SendAsync("GET", "/api/v1/daemon")).Status);
        Assert.Equal("WATCHDOG=1", await ReceiveUntilAsync(notify, m => m == "WATCHDOG=1"));
        Assert.Equal("WATCHDOG=1", await ReceiveUntilAsync(notify, m => m == "WATCHDOG=1"));

        daemon.Signal(NydusdProcess.SIGTERM);
        var stopping = await ReceiveUntilAsync(notify, m => m.Contains("STOPPING=1"));
        Assert.Contains("STATUS=stopping on SIGTERM", stopping);
        Assert.Equal(0, await daemon.WaitForExitAsync(Wait));
    }

    [Fact]
    public async Task A_watchdog_meant_for_another_process_is_not_fed()
    {
        var notifyPath = _dir.Combine("notify.sock");
        using var notify = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        notify.Bind(new UnixDomainSocketEndPoint(notifyPath));
        var socket = _dir.Combine("api.sock");
        await using var daemon = NydusdProcess.StartWith(null, new Dictionary<string, string?>
        {
            ["NOTIFY_SOCKET"] = notifyPath, ["WATCHDOG_USEC"] = "200000", ["WATCHDOG_PID"] = "1",
        }, "singleton", "--apisock", socket, "--work-dir", _dir.Combine("work"));
        await ReceiveUntilAsync(notify, m => m.Contains("READY=1"));
        // 2 s is ten watchdog intervals: nothing but a READY may arrive.
        var buffer = new byte[4096];
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(2));
        try
        {
            int n = await notify.ReceiveAsync(buffer, SocketFlags.None, cts.Token);
            Assert.Fail($"unexpected notification: {Encoding.UTF8.GetString(buffer, 0, n)}");
        }
        catch (OperationCanceledException)
        {
        }
    }

    private static async Task<string> ReceiveUntilAsync(Socket socket, Func<string, bool> wanted)
    {
        var buffer = new byte[4096];
        using var cts = new CancellationTokenSource(Wait);
        while (true)
        {
            int n = await socket.ReceiveAsync(buffer, SocketFlags.None, cts.Token);
            var message = Encoding.UTF8.GetString(buffer, 0, n);
            if (wanted(message)) return message;
        }
    }

    [Fact]
    public async Task A_failed_start_removes_the_state_directories_it_created_and_keeps_those_it_found()
    {
        // A HOCON file that parses as a file but not as HOCON: the start fails after the work dir was made.
        var badHocon = _dir.Combine("bad.conf");
        await File.WriteAllTextAsync(badHocon, "akka { loglevel = \n");
        var fresh = _dir.Combine("a", "b", "work");
        var (code, text) = await NydusdProcess.RunAsync(Wait, "singleton", "--work-dir", fresh, "--hocon", badHocon);
        Assert.Equal(1, code);
        Assert.Contains("cannot start", text);
        Assert.False(Directory.Exists(_dir.Combine("a")), "the work dir and the parents it needed are gone");
        Assert.True(Directory.Exists(_dir.Path));

        // A work dir that was there before keeps what it had.
        var existing = _dir.Combine("existing");
        Directory.CreateDirectory(existing);
        await File.WriteAllTextAsync(Path.Combine(existing, "keep"), "x");
        (code, _) = await NydusdProcess.RunAsync(Wait, "singleton", "--work-dir", existing, "--hocon", badHocon);
        Assert.Equal(1, code);
        Assert.True(File.Exists(Path.Combine(existing, "keep")));

        // The node agent likewise for its state dir.
        var agentState = _dir.Combine("agent", "state");
        (code, text) = await NydusdProcess.RunAsync(Wait, "agent", "--state-dir", agentState, "--sock", _dir.Combine("agent.sock"), "--hocon", badHocon);
        Assert.Equal(1, code);
        Assert.Contains("cannot start", text);
        Assert.False(Directory.Exists(_dir.Combine("agent")));
    }

    [Fact]
    public void Hocon_is_found_through_the_flag_then_the_environment_then_etc_nydus()
    {
        var flag = _dir.Combine("flag.conf");
        var env = _dir.Combine("env.conf");
        var system = _dir.Combine("etc-nydusd.conf");
        File.WriteAllText(flag, "");
        File.WriteAllText(env, "");
        Assert.Equal(flag, DaemonHocon.ResolveUserFile(flag, env, system));
        Assert.Equal(env, DaemonHocon.ResolveUserFile(null, env, system));
        Assert.Null(DaemonHocon.ResolveUserFile(null, null, system));
        File.WriteAllText(system, "");
        Assert.Equal(system, DaemonHocon.ResolveUserFile(null, "", system));
        var missing = Assert.Throws<FileNotFoundException>(() => DaemonHocon.ResolveUserFile(null, _dir.Combine("nope.conf"), system));
        Assert.Contains("NYDUSD_HOCON", missing.Message);
        Assert.Equal("/etc/nydus/nydusd.conf", DaemonHocon.SystemFile);
    }

    public void Dispose() => _dir.Dispose();
}
