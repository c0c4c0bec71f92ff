using System.Text.Json;
using Nydus.Actors.Api;
using Nydus.Actors.Fuse.Session;
using Nydus.Actors.Tests.Support;
using Nydus.Actors.Upgrade;

namespace Nydus.Actors.Tests.Upgrade;

/// <summary>
/// A test-side supervisor (the library's <see cref="SupervisorServer"/>, standing in for nydus-snapshotter) driving
/// real nydusd processes over one FUSE mount of a freshly generated EROFS image, through upstream's sequences
/// (§4.5). Disposing stops every daemon it started, aborts and detaches the mount if one is left, and removes the
/// temp dir, so a failing test leaves nothing behind.
/// </summary>
public sealed class UpgradeRig : IAsyncDisposable
{
    public static readonly TimeSpan Wait = TimeSpan.FromSeconds(30);

    // Past this the rig aborts the FUSE connection, whatever the test is doing: with no daemon serving (a test that
    // failed between handoffs) a reader's request stays queued on a connection the supervisor keeps alive, and the
    // test process would never end. Aborting fails those requests with ENOTCONN, so the test fails and cleans up.
    private static readonly TimeSpan Deadline = TimeSpan.FromMinutes(
        double.TryParse(Environment.GetEnvironmentVariable("NYDUS_TEST_RIG_MINUTES"), out var m) ? m : 8);

    private readonly TempDir _dir = new("upg");
    private readonly List<NydusdProcess> _started = [];
    private readonly Timer _watchdog;
    private int _sockets;
    private int _probeRound;
    private uint? _connection;

    private UpgradeRig(string[] extraArgs)
    {
        ExtraArgs = extraArgs;
        Id = "upg-" + Guid.NewGuid().ToString("N")[..10];
        Supervisor = new SupervisorServer(_dir.Combine("sup.sock"), TimeSpan.FromSeconds(10));
        _watchdog = new Timer(_ => AbortConnection(), null, Deadline, Timeout.InfiniteTimeSpan);
    }

    /// <summary>The kernel connection of the rig's mount (fixed once the first daemon mounted).</summary>
    public uint? ConnectionId => _connection;

    /// <summary>Fails every pending and future request of the mount (readers wake with ENOTCONN).</summary>
    public void AbortConnection()
    {
        if (_connection is not { } connection) return;
        // Connection ids are reused once a connection ends: never abort one that another mount now uses.
        if (MountInfoEntry.ReadAll().Any(e => e.IsFuse && e.Minor == connection && e.MountPoint != Path.GetFullPath(MountPoint))) return;
        try { FuseMount.Abort(connection); } catch (Nydus.Actors.Fuse.FuseException) { }
    }

    public string Id { get; }
    /// <summary>The generated image and what readers check against (built by <see cref="StartAsync"/>).</summary>
    public GeneratedTree Tree { get; private set; } = null!;
    public string MountPoint => _dir.Combine("mnt");
    public string Source => Tree.Source;
    public string Image => Tree.Image;
    public SupervisorServer Supervisor { get; }
    public string[] ExtraArgs { get; }

    public Dictionary<string, byte[]> FileHashes => Tree.FileHashes;
    public Dictionary<string, long> FileSizes => Tree.FileSizes;
    public Dictionary<string, string[]> Directories => Tree.Directories;

    /// <summary>The daemon serving now, and its API socket.</summary>
    public NydusdProcess Current { get; private set; } = null!;
    public string CurrentSocket { get; private set; } = "";

    /// <summary>A rig with a generated image mounted by a first daemon that has already sent its fd to the supervisor.</summary>
    public static async Task<UpgradeRig> StartAsync(params string[] extraArgs)
    {
        var rig = new UpgradeRig(extraArgs);
        try
        {
            rig.Tree = new GeneratedTree(rig._dir.Path);
            var socket = rig.NextSocket();
            var first = rig.Launch(socket, upgrade: false);
            await first.WaitForStateAsync(socket, "RUNNING", Wait);
            rig._connection = FuseMount.FindConnectionId(rig.MountPoint);
            rig.Current = first;
            rig.CurrentSocket = socket;
            await rig.SendFdAsync();
            return rig;
        }
        catch
        {
            await rig.DisposeAsync();
            throw;
        }
    }

    /// <summary>The arguments every daemon of this rig gets (upstream: the same args for old and new).</summary>
    public string[] DaemonArgs(string apiSocket) =>
    [
        "--apisock", apiSocket, "--id", Id, "--supervisor", Supervisor.Path, "--work-dir", _dir.Combine("work"),
        "-M", MountPoint, "--bootstrap", Image, "--localfs-dir", Source, "--thread-num", "4", .. ExtraArgs,
    ];

    public NydusdProcess Launch(string apiSocket, bool upgrade, params string[] more)
    {
        string[] args = upgrade ? [.. DaemonArgs(apiSocket), "--upgrade", .. more] : [.. DaemonArgs(apiSocket), .. more];
        var process = NydusdProcess.Start(args);
        lock (_started) _started.Add(process);
        return process;
    }

    /// <summary>Mounts the rig's image again through the API of the serving daemon, at <paramref name="mountpoint"/>
    /// (from <paramref name="source"/>, a copy of it, when given).</summary>
    public async Task MountImageThroughApiAsync(string mountpoint, string? source = null)
    {
        var config = NydusdMount.Json(Nydus.Actors.Config.NydusConfigLoader.CreateLocalFsDirConfigText(Source));
        using var api = new ApiClient(CurrentSocket, Wait);
        var body = $"{{\"source\":{NydusdMount.Json(source ?? Image)},\"fs_type\":\"rafs\",\"config\":{config}}}";
        var (status, answer) = await api.SendAsync("POST", "/api/v1/mount?mountpoint=" + Uri.EscapeDataString(mountpoint), body);
        if (status != 204) throw new InvalidOperationException($"mount of {mountpoint} answered {status}: {answer}");
    }

    /// <summary>A fresh API socket path (the snapshotter gives the new daemon of an upgrade its own).</summary>
    public string NextSocket() => _dir.Combine($"api{Interlocked.Increment(ref _sockets)}.sock");

    public static async Task<(int Status, string Body)> PutAsync(string socket, string path)
    {
        using var client = new ApiClient(socket, Wait);
        return await client.SendAsync("PUT", path);
    }

    /// <summary>sendfd until the supervisor has the new save. A daemon that has not seen FUSE INIT yet answers 503,
    /// so that one answer is retried (bounded).</summary>
    public async Task SendFdAsync()
    {
        var deadline = DateTime.UtcNow + Wait;
        while (true)
        {
            var saved = Supervisor.NextSave;
            var (status, body) = await PutAsync(CurrentSocket, "/api/v1/daemon/fuse/sendfd");
            if (status == 204)
            {
                await saved.WaitAsync(Wait);
                return;
            }
            if (status != 503 || DateTime.UtcNow > deadline)
                throw new InvalidOperationException($"sendfd answered {status}: {body}");
            await Task.Delay(20);
        }
    }

    /// <summary>
    /// Upstream's online upgrade, supervisor's view (§4.5): start the new binary with the same args plus --upgrade and
    /// its own API socket; wait for INIT; takeover; wait for READY; exit the old one; start the new one; wait for
    /// RUNNING; sendfd again. Returns how long the step between the old one's exit and the new one's RUNNING took.
    /// </summary>
    public async Task UpgradeAsync()
    {
        var old = Current;
        var oldSocket = CurrentSocket;
        var socket = NextSocket();
        var next = Launch(socket, upgrade: true);
        await next.WaitForStateAsync(socket, "INIT", Wait);
        await TakeoverAsync(socket);
        await next.WaitForStateAsync(socket, "READY", Wait);

        Check(await PutAsync(oldSocket, "/api/v1/daemon/exit"), "exit of the old daemon");
        var code = await old.WaitForExitAsync(Wait);
        if (code != 0) throw new InvalidOperationException($"the old daemon exited with {code}:\n{old.Output}");

        Check(await PutAsync(socket, "/api/v1/daemon/start"), "start of the new daemon");
        await next.WaitForStateAsync(socket, "RUNNING", Wait);
        Current = next;
        CurrentSocket = socket;
        await SendFdAsync();
    }

    /// <summary>The supervisor serves the next restore; then the daemon is told to take over.</summary>
    public async Task TakeoverAsync(string socket)
    {
        var served = Supervisor.ServeNextRestore();
        Check(await PutAsync(socket, "/api/v1/daemon/fuse/takeover"), "takeover");
        await served.WaitAsync(Wait);
    }

    /// <summary>
    /// Crash failover (§4.5): SIGKILL the daemon, restart it with the same args (same API socket, no --upgrade); it
    /// detects the crash and waits in INIT; takeover (restore + drain); start; sendfd again.
    /// </summary>
    /// <returns>From SIGKILL to the successor's first answered read (page cache dropped, so the daemon answers).</returns>
    public async Task<TimeSpan> KillAndFailOverAsync()
    {
        var watch = System.Diagnostics.Stopwatch.StartNew();
        Current.Signal(NydusdProcess.SIGKILL);
        await Current.WaitForExitAsync(Wait);
        var next = Launch(CurrentSocket, upgrade: false);
        await next.WaitForStateAsync(CurrentSocket, "INIT", Wait);
        await TakeoverAsync(CurrentSocket);
        await next.WaitForStateAsync(CurrentSocket, "READY", Wait);
        Check(await PutAsync(CurrentSocket, "/api/v1/daemon/start"), "start after failover");
        await next.WaitForStateAsync(CurrentSocket, "RUNNING", Wait);
        Current = next;
        // The first read that succeeds among a few files: with policy none a page whose READ the killed daemon had
        // taken stays locked for good, so one probe of that page alone would wait forever.
        var candidates = FileHashes.Keys.Where(f => FileSizes[f] > 0).Order(StringComparer.Ordinal).ToArray();
        var probes = Enumerable.Range(0, 4).Select(i => candidates[(_probeRound * 4 + i) % candidates.Length]).Select(file => Task.Run(() =>
        {
            using var handle = File.OpenHandle(MountPoint + file);
            TreeReaders.DropCache(handle);
            RandomAccess.Read(handle, new byte[1], 0);
        })).ToList();
        _probeRound++;
        while (true)
        {
            var done = await Task.WhenAny(probes).WaitAsync(Wait);
            if (done.IsCompletedSuccessfully) break;
            probes.Remove(done);
            if (probes.Count == 0) await done; // every probe failed: rethrow the last failure
        }
        var elapsed = watch.Elapsed;
        await SendFdAsync();
        return elapsed;
    }

    /// <summary>The serving daemon's FUSE request counters (GET /api/v1/metrics/failover): requests it was sent,
    /// those that came back with the resend bit after a failover, and those refused as unsafe to repeat.</summary>
    public async Task<(long Requests, long Resent, long RefusedResends)> FailoverCountersAsync()
    {
        using var client = new ApiClient(CurrentSocket, Wait);
        var (status, body) = await client.SendAsync("GET", "/api/v1/metrics/failover");
        if (status != 200) throw new InvalidOperationException($"GET /api/v1/metrics/failover answered {status}: {body}");
        var root = JsonDocument.Parse(body).RootElement;
        return (root.GetProperty("requests").GetInt64(), root.GetProperty("resent").GetInt64(), root.GetProperty("refused_resends").GetInt64());
    }

    /// <summary>Requests of the rig's connection that the kernel still waits an answer for (fusectl's <c>waiting</c>:
    /// queued or read by a daemon and not answered).</summary>
    public int WaitingRequests() =>
        int.Parse(File.ReadAllText(Path.Combine("/sys/fs/fuse/connections", _connection!.Value.ToString(), "waiting")).Trim());

    public static void Check((int Status, string Body) answer, string what)
    {
        if (answer.Status != 204) throw new InvalidOperationException($"{what} answered {answer.Status}: {answer.Body}");
    }

    public static string State(string body) => JsonDocument.Parse(body).RootElement.GetProperty("state").GetString()!;

    public static async Task<string> StateOfAsync(string socket)
    {
        using var client = new ApiClient(socket, Wait);
        var (status, body) = await client.SendAsync("GET", "/api/v1/daemon");
        return status == 200 ? State(body) : $"HTTP {status}";
    }

    public async ValueTask DisposeAsync()
    {
        await _watchdog.DisposeAsync();
        NydusdProcess[] started;
        lock (_started) started = [.. _started];
        // The serving daemon unmounts on SIGTERM; the rest are killed.
        foreach (var process in started.Where(p => !p.HasExited))
        {
            try { process.Signal(NydusdProcess.SIGTERM); } catch (InvalidOperationException) { }
        }
        foreach (var process in started)
        {
            try { await process.WaitForExitAsync(TimeSpan.FromSeconds(15)); } catch (TimeoutException) { }
            await process.DisposeAsync();
        }

        // Readers blocked on a connection nobody serves any more wake with ENOTCONN once it is aborted.
        // (The connection outlives a detached mount while anyone holds its fd, so it is aborted by its id.)
        AbortConnection();
        NydusdMount.DetachIfMounted(MountPoint);
        Supervisor.Dispose();
        _dir.Dispose();
    }
}
