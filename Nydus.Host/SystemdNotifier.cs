using System.Net.Sockets;
using System.Text;
using Serilog;

namespace Nydus.Host;

/// <summary>
/// systemd's readiness protocol (sd_notify(3)) for a <c>Type=notify</c> unit: datagrams like <c>READY=1</c> to the
/// Unix socket named by <c>$NOTIFY_SOCKET</c> (a leading '@' is the abstract namespace). Without the variable every
/// call does nothing, so nydusd behaves the same outside systemd. With <c>WatchdogSec=</c> systemd sets
/// <c>$WATCHDOG_USEC</c> (and <c>$WATCHDOG_PID</c>): <see cref="StartWatchdog"/> then sends <c>WATCHDOG=1</c> at half
/// that interval, each time only after a health check passed, so a daemon whose actors stopped answering is restarted.
/// A failure to notify is logged, never fatal: the daemon serves whether or not systemd hears it.
/// </summary>
public sealed class SystemdNotifier : IDisposable
{
    public const string SocketVariable = "NOTIFY_SOCKET";

    private readonly string? _socketPath;
    private readonly TimeSpan? _watchdogInterval;
    private CancellationTokenSource? _watchdogStop;
    private Task? _watchdog;

    public SystemdNotifier(Func<string, string?> environment)
    {
        var socket = environment(SocketVariable);
        _socketPath = string.IsNullOrEmpty(socket) ? null : socket[0] == '@' ? "\0" + socket[1..] : socket;
        // WATCHDOG_PID, when set, names the process systemd watches: a child that inherited the variables must not ping.
        var pid = environment("WATCHDOG_PID");
        if (long.TryParse(environment("WATCHDOG_USEC"), out var usec) && usec > 0
            && (string.IsNullOrEmpty(pid) || pid == Environment.ProcessId.ToString()))
            _watchdogInterval = TimeSpan.FromMicroseconds(usec);
    }

    public static SystemdNotifier FromEnvironment() => new(Environment.GetEnvironmentVariable);

    public bool Enabled => _socketPath is not null;

    /// <summary>The interval systemd asked for (WatchdogSec=), or null.</summary>
    public TimeSpan? WatchdogInterval => _watchdogInterval;

    /// <summary>The service is up: systemd starts the units ordered after it.</summary>
    public void Ready(string status) => Send($"READY=1\nMAINPID={Environment.ProcessId}\nSTATUS={status}");

    public void Stopping(string status) => Send($"STOPPING=1\nSTATUS={status}");

    public void Status(string status) => Send($"STATUS={status}");

    /// <summary>Pings the watchdog at half its interval while <paramref name="healthy"/> says so (no-op without one).</summary>
    public void StartWatchdog(Func<CancellationToken, Task<bool>> healthy)
    {
        if (_socketPath is null || _watchdogInterval is not { } interval || _watchdog is not null) return;
        _watchdogStop = new CancellationTokenSource();
        var token = _watchdogStop.Token;
        _watchdog = Task.Run(async () =>
        {
            using var timer = new PeriodicTimer(interval / 2);
            do
            {
                bool ok;
                try { ok = await healthy(token); }
                catch (Exception e) when (e is not OperationCanceledException) { ok = false; }
                if (ok) Send("WATCHDOG=1");
                else Log.Warning("Health check failed: no watchdog ping this time");
            } while (await timer.WaitForNextTickAsync(token).ConfigureAwait(false));
        }, token).ContinueWith(_ => { }, TaskScheduler.Default);
    }

    private void Send(string message)
    {
        if (_socketPath is null) return;
        try
        {
            using var socket = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
            socket.SendTo(Encoding.UTF8.GetBytes(message), new UnixDomainSocketEndPoint(_socketPath));
        }
        catch (SocketException e)
        {
            Log.Warning("Could not notify systemd at {Socket}: {Error}", _socketPath.Replace('\0', '@'), e.Message);
        }
    }

    public void Dispose()
    {
        _watchdogStop?.Cancel();
        try { _watchdog?.Wait(TimeSpan.FromSeconds(5)); } catch (AggregateException) { }
        _watchdogStop?.Dispose();
    }
}
