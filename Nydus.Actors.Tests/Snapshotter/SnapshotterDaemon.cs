using System.Net.Sockets;
using System.Text.Json;
using Nydus.Actors.Api;
using Nydus.Actors.Tests.Support;

namespace Nydus.Actors.Tests.Snapshotter;

/// <summary>An error answer as nydus-snapshotter reports it (pkg/daemon/client.go, <c>parseErrorMessage</c>).</summary>
public sealed class NydusdApiException(int status, string code, string message)
    : Exception($"http response: {status}, error code: {code}, error message: {message}")
{
    public int Status { get; } = status;
}

/// <summary>
/// One nydusd as nydus-snapshotter drives it: its command line (pkg/manager/daemon_adaptor.go
/// <c>BuildDaemonCommand</c>, pkg/daemon/command/command.go), its API client (pkg/daemon/client.go: success is 200 or
/// 204, anything else a <c>{code, message}</c> error), its waits (pkg/daemon/daemon.go <c>WaitUntilState</c>,
/// <c>WaitUntilSocketExisted</c>) and its liveness monitor (pkg/manager/monitor.go: one idle connection to the API
/// socket per daemon, watched for HUP, never used for a request).
/// </summary>
public sealed class SnapshotterDaemon : IAsyncDisposable
{
    private static readonly TimeSpan HttpTimeout = TimeSpan.FromSeconds(30); // client.go defaultHTTPClientTimeout
    private Socket? _monitor;
    private Task<DateTime>? _hup;
    private CancellationTokenSource? _monitorStop;

    private SnapshotterDaemon(NydusdProcess process, string apiSocket, string[] args)
    {
        Process = process;
        ApiSocket = apiSocket;
        Args = args;
    }

    public NydusdProcess Process { get; }
    public string ApiSocket { get; }
    public string[] Args { get; }

    /// <summary>
    /// The arguments of a FUSE shared daemon (no bootstrap: instances come through the API), in the order
    /// <c>BuildCommand</c> emits its struct fields: <c>fuse [--upgrade] --id --mountpoint --apisock --log-level
    /// [--log-rotation-size] --supervisor --log-file --failover-policy</c>. <c>--thread-num</c> is left out as upstream
    /// does for the default 0. <c>--log-rotation-size 100</c> is its default (constant.DefaultDaemonRotateLogMaxSize).
    /// </summary>
    public static string[] SharedDaemonArgs(string id, string mountpoint, string apiSocket, string supervisor, string logFile, bool upgrade) =>
    [
        "fuse", .. upgrade ? new[] { "--upgrade" } : [], "--id", id, "--mountpoint", mountpoint, "--apisock", apiSocket,
        "--log-level", "info", "--log-rotation-size", "100", "--supervisor", supervisor, "--log-file", logFile, "--failover-policy", "resend",
    ];

    /// <summary><c>cmd.Start()</c>: the process only; what follows is the caller's (StartDaemon's goroutine, or the upgrade).</summary>
    public static SnapshotterDaemon Exec(string apiSocket, string[] args) => new(NydusdProcess.Start(args), apiSocket, args);

    /// <summary>pkg/daemon/client.go <c>WaitUntilSocketExisted</c>: 100 tries 100 ms apart, given up early only when the
    /// process became a zombie (here: exited).</summary>
    public Task WaitUntilSocketExistedAsync() => SnapshotterRetry.DoAsync(() =>
        {
            // os.Stat, then "st.Mode()&os.ModeSocket == 0" is an error too.
            if (FusePosix.LStat(ApiSocket, out var st) != Nydus.Actors.Interop.Errno.Success || (st.Mode & 0xF000) != 0xC000)
                throw new FileNotFoundException($"{ApiSocket} is not a socket (yet)");
            return Task.CompletedTask;
        }, attempts: 100, TimeSpan.FromMilliseconds(100), abort: _ => Process.HasExited);

    /// <summary>
    /// pkg/daemon/daemon.go <c>WaitUntilState</c>: 20 tries 100 ms (+ jitter) apart of <c>GET /api/v1/daemon</c> (the
    /// first one, through <c>GetClient</c>, waits for the socket file first). Returns false when that budget ran out
    /// (the snapshotter gives up there) and the state came later: how fast a process starts is measured and reported
    /// by the test, not asserted (the machine's load decides it). Throws when the state never comes within 30 s.
    /// </summary>
    public async Task<bool> WaitUntilStateAsync(string expected)
    {
        await WaitUntilSocketExistedAsync();
        string last = "";
        async Task Attempt()
        {
            last = (await GetDaemonInfoAsync()).GetProperty("state").GetString() ?? "";
            if (last != expected) throw new InvalidOperationException($"daemon is not {expected} yet, current state {last}");
        }
        try
        {
            await SnapshotterRetry.DoAsync(Attempt, attempts: 20, TimeSpan.FromMilliseconds(100));
            return true;
        }
        catch (Exception e) when (e is not Xunit.Sdk.XunitException)
        {
        }
        try
        {
            await SnapshotterRetry.DoAsync(Attempt, attempts: 150, TimeSpan.FromMilliseconds(100));
            return false;
        }
        catch (Exception e) when (e is not Xunit.Sdk.XunitException)
        {
            throw new TimeoutException($"the daemon (pid {Process.Pid}) did not report {expected} (last: {last}): {e.Message}\n{Process.Output}", e);
        }
    }

    // ---- pkg/daemon/client.go ----

    public async Task<JsonElement> GetDaemonInfoAsync()
    {
        var body = await RequestAsync("GET", "/api/v1/daemon", null, expectBody: true);
        return JsonDocument.Parse(body).RootElement.Clone();
    }

    /// <summary><c>Mount(mp, bootstrap, config)</c>: <c>types.NewMountRequest</c> is <c>{fs_type: "rafs", source, config}</c>.</summary>
    public Task MountAsync(string mountpoint, string bootstrap, string config) =>
        RequestAsync("POST", "/api/v1/mount?mountpoint=" + Uri.EscapeDataString(mountpoint),
            JsonSerializer.Serialize(new { fs_type = "rafs", source = bootstrap, config }), expectBody: false);

    public Task UmountAsync(string mountpoint) =>
        RequestAsync("DELETE", "/api/v1/mount?mountpoint=" + Uri.EscapeDataString(mountpoint), null, expectBody: false);

    public Task TakeOverAsync() => RequestAsync("PUT", "/api/v1/daemon/fuse/takeover", null, expectBody: false);
    public Task SendFdAsync() => RequestAsync("PUT", "/api/v1/daemon/fuse/sendfd", null, expectBody: false);
    public Task StartAsync() => RequestAsync("PUT", "/api/v1/daemon/start", null, expectBody: false);
    public Task ExitAsync() => RequestAsync("PUT", "/api/v1/daemon/exit", null, expectBody: false);

    /// <summary>client.go <c>request</c>: 200 and 204 succeed, every other status is decoded as <c>{code, message}</c>
    /// (a body that is not that JSON is itself an error). The test also checks what the snapshotter relies on
    /// silently: a call that returns nothing answers 204 without a body, GET answers 200 with JSON.</summary>
    private async Task<string> RequestAsync(string method, string path, string? body, bool expectBody)
    {
        using var client = new ApiClient(ApiSocket, HttpTimeout);
        var (status, text) = await client.SendAsync(method, path, body);
        if (status is 200 or 204)
        {
            if (expectBody && status != 200) throw new InvalidOperationException($"{method} {path} answered {status} without a body");
            if (!expectBody && (status != 204 || text.Length != 0))
                throw new InvalidOperationException($"{method} {path} answered {status} with '{text}', upstream answers 204 without a body");
            return text;
        }
        using var error = JsonDocument.Parse(text);
        throw new NydusdApiException(status, error.RootElement.GetProperty("code").GetString() ?? "",
            error.RootElement.GetProperty("message").GetString() ?? "");
    }

    // ---- pkg/manager/monitor.go ----

    /// <summary><c>Subscribe</c>: connect to the API socket and watch the idle connection for HUP (the daemon died).</summary>
    public void Subscribe()
    {
        if (_monitor is not null) throw new InvalidOperationException("already subscribed");
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        socket.Connect(new UnixDomainSocketEndPoint(ApiSocket));
        _monitor = socket;
        _monitorStop = new CancellationTokenSource();
        var stop = _monitorStop.Token;
        _hup = Task.Run(() =>
        {
            // The connection never carries a request: readable means the peer closed it (EOF/HUP).
            while (!stop.IsCancellationRequested)
            {
                if (socket.Poll(TimeSpan.FromMilliseconds(200), SelectMode.SelectRead) && !stop.IsCancellationRequested)
                    return DateTime.UtcNow;
            }
            throw new OperationCanceledException(stop);
        }, CancellationToken.None);
    }

    /// <summary>Completes when the monitor saw the daemon's connection hang up.</summary>
    public Task<DateTime> Hup => _hup ?? throw new InvalidOperationException("not subscribed");

    /// <summary><c>Unsubscribe</c>: stop watching and close the connection. Returns whether it had hung up meanwhile.</summary>
    public async Task<bool> UnsubscribeAsync()
    {
        if (_monitor is null) return false;
        bool hungUp = _hup!.IsCompletedSuccessfully;
        _monitorStop!.Cancel();
        try { await _hup.WaitAsync(TimeSpan.FromSeconds(5)); } catch (OperationCanceledException) { }
        _monitor.Dispose();
        _monitor = null;
        return hungUp;
    }

    public async ValueTask DisposeAsync()
    {
        await UnsubscribeAsync();
        if (!Process.HasExited)
        {
            try { Process.Signal(NydusdProcess.SIGKILL); } catch (InvalidOperationException) { }
        }
        await Process.DisposeAsync();
    }
}
