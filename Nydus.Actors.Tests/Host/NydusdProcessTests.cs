using System.Text.Json;
using Nydus.Actors.Api;
using Nydus.Actors.Tests.Support;
using Xunit;

namespace Nydus.Actors.Tests.Host;

/// <summary>End to end: the real nydusd binary, its Unix socket API, its exit codes and signals.</summary>
public sealed class NydusdProcessTests : IDisposable
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(30);
    private readonly TempDir _dir = new("host");

    private string Socket => _dir.Combine("api.sock");

    private NydusdProcess StartSingleton(string? socket = null, params string[] extra) =>
        NydusdProcess.Start(["singleton", "--apisock", socket ?? Socket, "--work-dir", _dir.Combine("work"), .. extra]);

    private static string State(string json) => JsonDocument.Parse(json).RootElement.GetProperty("state").GetString()!;

    private static string Code(string json) => JsonDocument.Parse(json).RootElement.GetProperty("code").GetString()!;

    [Fact]
    public async Task Api_reports_daemon_info_and_exit_ends_the_process_cleanly()
    {
        await using var daemon = StartSingleton(null, "--id", "e2e-info");
        await daemon.WaitForStateAsync(Socket, "RUNNING", Wait);
        using var client = new ApiClient(Socket);

        var (status, body) = await client.SendAsync("GET", "/api/v1/daemon");
        Assert.Equal(200, status);
        var info = JsonDocument.Parse(body).RootElement;
        Assert.Equal("RUNNING", info.GetProperty("state").GetString());
        Assert.Equal("e2e-info", info.GetProperty("id").GetString());
        Assert.Equal(JsonValueKind.Null, info.GetProperty("supervisor").ValueKind);
        Assert.False(string.IsNullOrEmpty(info.GetProperty("version").GetProperty("package_ver").GetString()));
        // The socket is the owner's alone.
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Socket));
        // State lives under the work dir, in SQLite; the journal recovers beside the start, so wait for its file.
        var deadline = DateTime.UtcNow + Wait;
        while (!File.Exists(_dir.Combine("work", "journal.db")) && DateTime.UtcNow < deadline) await Task.Delay(20);
        Assert.True(File.Exists(_dir.Combine("work", "journal.db")));
        await WaitForLogAsync(daemon, "Daemon record: 1 starts");

        var (exitStatus, exitBody) = await client.SendAsync("PUT", "/api/v1/daemon/exit");
        Assert.Equal(204, exitStatus);
        Assert.Equal("", exitBody);
        Assert.Equal(0, await daemon.WaitForExitAsync(Wait));
        Assert.False(File.Exists(Socket), "nydusd removes its own API socket on the way out");
        Assert.Contains("STOPPED", daemon.Output);
    }

    [Theory]
    [InlineData(NydusdProcess.SIGTERM, "SIGTERM")]
    [InlineData(NydusdProcess.SIGINT, "SIGINT")]
    public async Task A_shutdown_signal_stops_through_the_state_machine(int signal, string name)
    {
        await using var daemon = StartSingleton();
        await daemon.WaitForStateAsync(Socket, "RUNNING", Wait);
        daemon.Signal(signal);
        Assert.Equal(0, await daemon.WaitForExitAsync(Wait));
        Assert.Contains($"Received {name}", daemon.Output);
        Assert.Contains("Running --Stop--> Ready", daemon.Output);
        Assert.Contains("Ready --Stop--> Die", daemon.Output);
        Assert.False(File.Exists(Socket));
    }

    [Fact]
    public async Task Bad_requests_get_clear_errors_and_the_daemon_keeps_serving()
    {
        await using var daemon = StartSingleton();
        await daemon.WaitForStateAsync(Socket, "RUNNING", Wait);
        using var client = new ApiClient(Socket);

        var (status, body) = await client.SendAsync("PUT", "/api/v1/daemon", "{\"log_level\": ");
        Assert.Equal(400, status);
        Assert.Equal("BadRequest", Code(body));
        Assert.Contains("not valid JSON", body);

        (status, body) = await client.SendAsync("POST", "/api/v1/daemon");
        Assert.Equal(400, status);
        Assert.Contains("method POST is not served on /api/v1/daemon", body);

        (status, body) = await client.SendAsync("GET", "/api/v1/nothing-here");
        Assert.Equal(404, status);
        Assert.Equal("NoRoute", Code(body));

        (status, body) = await client.SendAsync("PUT", "/api/v1/daemon/start");
        Assert.Equal(400, status);
        Assert.Equal("UnexpectedEvent", Code(body));
        Assert.Contains("Start", body);

        (status, body) = await client.SendAsync("PUT", "/api/v1/daemon/exit", "{}");
        Assert.Equal(400, status);
        Assert.Contains("takes no request body", body);

        (status, body) = await client.SendAsync("PUT", "/api/v1/daemon", "{\"log_level\":\"loud\"}");
        Assert.Equal(400, status);
        Assert.Contains("unknown log level 'loud'", body);

        (status, body) = await client.SendAsync("PUT", "/api/v1/daemon/fuse/takeover");
        Assert.Equal(501, status);
        Assert.Equal("Unsupported", Code(body));

        (status, _) = await client.SendAsync("PUT", "/api/v1/daemon", "{\"log_level\":\"debug\"}");
        Assert.Equal(204, status);

        (status, body) = await client.SendAsync("GET", "/api/v1/daemon/events");
        Assert.Equal(200, status);
        Assert.Equal(500, JsonDocument.Parse(body).RootElement.GetProperty("max_errors").GetInt32());

        (status, body) = await client.SendAsync("GET", "/api/v1/daemon");
        Assert.Equal(200, status);
        Assert.Equal("RUNNING", State(body));
        Assert.False(daemon.HasExited);
    }

    [Fact]
    public async Task A_second_daemon_on_the_same_socket_is_refused_and_the_first_keeps_serving()
    {
        await using var first = StartSingleton();
        await first.WaitForStateAsync(Socket, "RUNNING", Wait);

        await using var second = NydusdProcess.Start("singleton", "--apisock", Socket, "--work-dir", _dir.Combine("work2"));
        Assert.Equal(1, await second.WaitForExitAsync(Wait));
        Assert.Contains($"API socket {Socket} is in use by a running daemon", second.Output);

        using var client = new ApiClient(Socket);
        var (status, body) = await client.SendAsync("GET", "/api/v1/daemon");
        Assert.Equal(200, status);
        Assert.Equal("RUNNING", State(body));
    }

    [Fact]
    public async Task A_stale_socket_file_from_a_dead_daemon_is_replaced()
    {
        // A socket file nobody listens on: what a killed daemon leaves. (.NET deletes a socket file it bound when
        // the socket is disposed, so another process makes it.)
        var python = System.Diagnostics.Process.Start("python3", ["-c", $"import socket; socket.socket(socket.AF_UNIX).bind('{Socket}')"]);
        await python.WaitForExitAsync(new CancellationTokenSource(Wait).Token);
        Assert.True(File.Exists(Socket));
        Assert.False(ApiSocket.IsLive(Socket));

        await using var daemon = StartSingleton();
        await daemon.WaitForStateAsync(Socket, "RUNNING", Wait);
    }

    [Theory]
    [InlineData("Unrecognized command or argument '--bogus'", "--bogus")]
    [InlineData("invalid --thread-num 0: must be between 1 and 1024", "--thread-num", "0", "--mountpoint", "/tmp")]
    [InlineData("invalid --thread-num 1025", "--thread-num", "1025", "--mountpoint", "/tmp")]
    [InlineData("--mountpoint is required in FUSE mode")]
    [InlineData("--supervisor requires --id", "singleton", "--supervisor", "/tmp/sup.sock")]
    [InlineData("invalid --log-level 'loud'", "singleton", "--log-level", "loud")]
    [InlineData("invalid --failover-policy 'sometimes'", "--failover-policy", "sometimes", "--mountpoint", "/tmp")]
    [InlineData("--bootstrap and --shared-dir cannot be used together", "-M", "/tmp", "-B", "/x", "--shared-dir", "/y")]
    [InlineData("--upgrade for a singleton requires --fscache", "singleton", "--upgrade")]
    [InlineData("--upgrade requires --supervisor", "singleton", "--fscache", "/tmp", "--upgrade")]
    [InlineData("--fscache-threads must be between 1 and 1024", "singleton", "--fscache", "/tmp", "--fscache-threads", "0")]
    public async Task Bad_command_lines_exit_2_with_a_message(string expected, params string[] args)
    {
        var (code, output) = await NydusdProcess.RunAsync(Wait, args);
        Assert.Equal(2, code);
        Assert.Contains(expected, output);
    }

    [Fact]
    public async Task An_unreadable_config_is_refused()
    {
        var missing = _dir.Combine("no-such-config.json");
        var (code, output) = await NydusdProcess.RunAsync(Wait, "singleton", "--config", missing);
        Assert.Equal(2, code);
        Assert.Contains($"cannot read --config file {missing}", output);

        // A directory is not a readable config either.
        (code, output) = await NydusdProcess.RunAsync(Wait, "singleton", "--config", _dir.Path);
        Assert.Equal(2, code);
        Assert.Contains("cannot read --config file", output);
    }

    [Fact]
    public async Task Ctl_client_talks_to_the_socket()
    {
        await using var daemon = StartSingleton();
        await daemon.WaitForStateAsync(Socket, "RUNNING", Wait);
        var (code, output) = await NydusdProcess.RunAsync(Wait, "ctl", "--sock", Socket, "-r", "info");
        Assert.Equal(0, code);
        Assert.Equal("RUNNING", State(output.Trim()));
        (code, _) = await NydusdProcess.RunAsync(Wait, "ctl", "--sock", Socket, "exit");
        Assert.Equal(0, code);
        Assert.Equal(0, await daemon.WaitForExitAsync(Wait));
        (code, output) = await NydusdProcess.RunAsync(Wait, "ctl", "--sock", Socket, "info");
        Assert.Equal(2, code);
        Assert.Contains("cannot reach the daemon", output);
    }

    [Fact]
    public async Task A_journal_that_cannot_be_opened_stops_the_daemon_with_a_failure()
    {
        // A daemon that cannot record its state must not go on pretending to keep it.
        var hocon = _dir.Combine("bad-journal.conf");
        File.WriteAllText(hocon, "akka.persistence.journal.sql.connection-string = \"Data Source=/proc/no-such-dir/journal.db\"\n");
        await using var daemon = StartSingleton(null, "--hocon", hocon);
        Assert.Equal(1, await daemon.WaitForExitAsync(TimeSpan.FromSeconds(90)));
        Assert.Contains("nydusd cannot start: the journal of nydusd-default cannot be replayed", daemon.Output);
        Assert.False(File.Exists(Socket));
    }

    private static async Task WaitForLogAsync(NydusdProcess daemon, string text)
    {
        var deadline = DateTime.UtcNow + Wait;
        while (!daemon.Output.Contains(text) && DateTime.UtcNow < deadline) await Task.Delay(20);
        Assert.Contains(text, daemon.Output);
    }

    public void Dispose() => _dir.Dispose();
}
