using System.Text.Json;
using System.Text.Json.Nodes;
using Nydus.Actors.Api;
using Nydus.Actors.Fscache;
using Nydus.Actors.Fscache.Simulation;
using Nydus.Actors.Tests.Block;
using Nydus.Actors.Tests.Support;
using Nydus.Actors.Upgrade;
using Xunit;
using Xunit.Abstractions;

namespace Nydus.Actors.Tests.Fscache;

/// <summary>
/// Live upgrade and SIGKILL failover of an fscache singleton (issue 18 item 4) with real nydusd processes, a
/// test-side supervisor (the library's <see cref="SupervisorServer"/>, standing in for nydus-snapshotter) and the
/// simulated kernel (<see cref="SimulatedCachefilesKernel"/>, which offers again on <c>restore</c> what a daemon read
/// and did not answer, re-opens objects whose anonymous fds died, and counts answers to requests already answered).
/// READs go on in flight throughout, across both handoffs: none may be lost, none answered twice, and every byte
/// the "kernel" reads back must be the image's.
/// </summary>
public sealed class FscacheHandoffTests(ITestOutputHelper output) : IAsyncLifetime
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(60);
    private const int InFlight = 24;
    private readonly TempDir _dir = new("fscache-handoff");
    private readonly List<NydusdProcess> _started = [];
    private readonly string _id = "fsc-" + Guid.NewGuid().ToString("N")[..8];
    private SimulatedCachefilesKernel _kernel = null!;
    private SupervisorServer _supervisor = null!;
    private int _sockets;
    // READs sent and not answered right after the predecessor of an upgrade exited: they wait for the successor.
    private int _inFlightAtExit = -1;

    public Task InitializeAsync()
    {
        _kernel = SimulatedCachefilesKernel.Listen(_dir.Combine("cachefiles.sock"), _dir.Combine("kernel-cache"));
        _supervisor = new SupervisorServer(_dir.Combine("sup.sock"), TimeSpan.FromSeconds(10));
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        foreach (var process in _started)
        {
            if (!process.HasExited) process.Signal(NydusdProcess.SIGKILL);
            output.WriteLine($"--- nydusd {process.Pid} ---\n{process.Output}");
            await process.DisposeAsync();
        }

        _supervisor.Dispose();
        _kernel.Dispose();
        _dir.Dispose();
    }

    private string NextSocket() => _dir.Combine($"api{++_sockets}.sock");

    private NydusdProcess Launch(string socket, bool upgrade)
    {
        string[] args =
        [
            "singleton", "--apisock", socket, "--id", _id, "--supervisor", _supervisor.Path, "--work-dir", _dir.Combine("work"),
            "--fscache", _dir.Combine("fscache"), "--fscache-tag", "handoff", "--fscache-threads", "4",
        ];
        var process = NydusdProcess.StartIn(null, new Dictionary<string, string> { [SimulatedCachefilesDevice.SocketVariable] = _dir.Combine("cachefiles.sock") },
            upgrade ? [.. args, "--upgrade"] : args);
        _started.Add(process);
        return process;
    }

    private static async Task PutAsync(string socket, string path)
    {
        using var api = new ApiClient(socket, Wait);
        var (status, body) = await api.SendAsync("PUT", path);
        Assert.True(status == 204, $"PUT {path} on {socket} answered {status} {body}");
    }

    private async Task SendFdAsync(string socket)
    {
        var saved = _supervisor.NextSave;
        await PutAsync(socket, "/api/v1/daemon/fuse/sendfd");
        await saved.WaitAsync(Wait);
    }

    private static async Task<string[]> BlobKeysAsync(string socket)
    {
        using var api = new ApiClient(socket, Wait);
        var (status, body) = await api.SendAsync("GET", "/api/v2/blobs");
        Assert.Equal(200, status);
        return [.. JsonNode.Parse(body)!["blobs"]!.AsArray().Select(i => $"{i!["domain_id"]}/{i["id"]}").Order(StringComparer.Ordinal)];
    }

    /// <summary>Takes over from the serving daemon (still running, or killed) with a new process started with
    /// --upgrade: takeover, READY, (exit of the old one), start, RUNNING, sendfd. Returns the successor's socket.</summary>
    private async Task<(NydusdProcess Process, string Socket)> TakeOverAsync(NydusdProcess? old, string? oldSocket, string[] expectedKeys)
    {
        var socket = NextSocket();
        var next = Launch(socket, upgrade: true);
        await next.WaitForStateAsync(socket, "INIT", Wait);
        var served = _supervisor.ServeNextRestore();
        await PutAsync(socket, "/api/v1/daemon/fuse/takeover");
        await served.WaitAsync(Wait);
        await next.WaitForStateAsync(socket, "READY", Wait);
        // The blob entries came with the state: a re-opened object is found in the successor's manager.
        Assert.Equal(expectedKeys, await BlobKeysAsync(socket));
        if (old is not null)
        {
            await PutAsync(oldSocket!, "/api/v1/daemon/exit");
            Assert.Equal(0, await old.WaitForExitAsync(Wait));
            _inFlightAtExit = _kernel.InFlight;
        }

        await PutAsync(socket, "/api/v1/daemon/start");
        await next.WaitForStateAsync(socket, "RUNNING", Wait);
        await SendFdAsync(socket);
        return (next, socket);
    }

    [Fact]
    public async Task Upgrade_and_SIGKILL_failover_with_READs_in_flight_lose_none_and_answer_none_twice()
    {
        var socket = NextSocket();
        var current = Launch(socket, upgrade: false);
        await current.WaitForStateAsync(socket, "RUNNING", Wait);
        await _kernel.Bound.WaitAsync(Wait);
        Directory.CreateDirectory(_dir.Combine("fscache-work"));
        foreach (var domain in new[] { "d1", "d2" })
            await FscacheFixture.AddAsync(socket, FscacheFixture.LocalEntry(domain, "img", UpstreamBlockImage.Bootstrap, _dir.Combine("fscache-work")), Wait);
        string[] keys = await BlobKeysAsync(socket);
        Assert.Equal(4, keys.Length); // two bootstraps, the data blob in each domain

        var objects = new List<(SimulatedObject Object, byte[] Expected)>();
        foreach (var domain in new[] { "d1", "d2" })
        {
            objects.Add((await _kernel.OpenAsync("erofs," + domain, "img", Wait), FscacheFixture.Bootstrap));
            objects.Add((await _kernel.OpenAsync("erofs," + domain, UpstreamBlockImage.BlobId, Wait), FscacheFixture.DataObject));
        }
        Assert.All(objects, o => Assert.Equal(o.Expected.Length, o.Object.Size));
        await SendFdAsync(socket);

        // READs of 4 KiB pieces at random places, InFlight outstanding at any time, until told to stop.
        var reads = new List<(int Object, long Offset, Task<string> Done)>();
        using var stop = new CancellationTokenSource();
        var random = new Random(18);
        var driver = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                Task[] outstanding;
                lock (reads) outstanding = [.. reads.Where(r => !r.Done.IsCompleted).Select(r => (Task)r.Done)];
                if (outstanding.Length >= InFlight)
                {
                    await Task.WhenAny([.. outstanding, Task.Delay(100)]);
                    continue;
                }
                int index = random.Next(objects.Count);
                long offset = random.Next((int)(objects[index].Object.Size / 4096)) * 4096L;
                lock (reads) reads.Add((index, offset, _kernel.StartRead(objects[index].Object, offset, 4096)));
            }
        });

        async Task CompletedAtLeastAsync(int count)
        {
            var deadline = DateTime.UtcNow + Wait;
            while (true)
            {
                int done;
                lock (reads) done = reads.Count(r => r.Done.IsCompleted);
                if (done >= count) return;
                if (DateTime.UtcNow > deadline) throw new TimeoutException($"only {done} of {count} READs completed; in flight {_kernel.InFlight}");
                await Task.Delay(20);
            }
        }

        async Task<int> InFlightAsync()
        {
            var deadline = DateTime.UtcNow + Wait;
            while (true)
            {
                int inFlight = _kernel.InFlight;
                if (inFlight > 0 || DateTime.UtcNow > deadline) return inFlight;
                await Task.Yield();
            }
        }

        await CompletedAtLeastAsync(100);

        // Live upgrade while READs go on: those sent after the old daemon stopped reading wait for the new one.
        var (next, nextSocket) = await TakeOverAsync(current, socket, keys);
        Assert.True(_inFlightAtExit > 0, "no READ was in flight when the old daemon had exited");
        (current, socket) = (next, nextSocket);
        int sent;
        lock (reads) sent = reads.Count;
        await CompletedAtLeastAsync(sent + 100);

        // SIGKILL with READs sent and not answered, then a successor takes over from the supervisor's copy. READs of
        // ranges already in the cache file are answered in microseconds, so a single look at the count can find none
        // outstanding: kill at a moment one is (the driver keeps sending, so such a moment comes).
        int beforeKill = await InFlightAsync();
        Assert.True(beforeKill > 0, "no READ was in flight at the kill");
        current.Signal(NydusdProcess.SIGKILL);
        await current.WaitForExitAsync(Wait);
        (current, socket) = await TakeOverAsync(null, null, keys);
        int issued;
        lock (reads) issued = reads.Count;
        await CompletedAtLeastAsync(issued + 100);

        await stop.CancelAsync();
        await driver.WaitAsync(Wait);
        List<(int Object, long Offset, Task<string> Done)> all;
        lock (reads) all = [.. reads];
        // None lost: every READ ever sent is completed (bounded wait).
        await Task.WhenAll(all.Select(r => r.Done)).WaitAsync(Wait);
        Assert.Equal(0, _kernel.InFlight);
        // None answered twice, none on the wrong object's fd.
        Assert.Empty(_kernel.UnexpectedReplies);
        // Every byte read back is the image's.
        foreach (var (index, offset, _) in all)
        {
            var (obj, expected) = objects[index];
            var back = SimulatedCachefilesKernel.ReadBack(obj, offset, 4096);
            Assert.True(back.Filled, $"{obj.CookieKey} [{offset}, +4096) was completed with a hole");
            Assert.Equal(expected.AsSpan((int)offset, back.Bytes.Length).ToArray(), back.Bytes);
        }

        output.WriteLine($"{all.Count} READs; in flight when the upgraded daemon had exited {_inFlightAtExit}, at the kill {beforeKill}; restores {_kernel.Restores}, "
                         + $"requests offered again {_kernel.Redelivered}, objects re-opened {_kernel.Reopens}, stale READ copies {_kernel.StaleReads}");
        Assert.Equal(2, _kernel.Restores);
        // Each successor re-opened objects the kernel had open with its predecessor (their fds died with it).
        Assert.True(_kernel.Reopens >= 2, $"only {_kernel.Reopens} re-opens");
        Assert.Equal("RUNNING", UpgradeStateOf(await StateAsync(socket)));
        // READs that reached the last successor with its predecessor's object id are counted as such, not as malformed.
        using var api = new ApiClient(socket, Wait);
        var (status, body) = await api.SendAsync("GET", "/api/v1/metrics/fscache");
        Assert.Equal(200, status);
        var counters = JsonSerializer.Deserialize<Dictionary<string, long>>(body)!;
        output.WriteLine($"last successor's counters: {body}");
        Assert.Equal(0, counters["malformed_requests"]);
        Assert.InRange(counters["unknown_object_reads"], 0, _kernel.StaleReads);
    }

    private static async Task<string> StateAsync(string socket)
    {
        using var api = new ApiClient(socket, Wait);
        var (status, body) = await api.SendAsync("GET", "/api/v1/daemon");
        Assert.Equal(200, status);
        return body;
    }

    private static string UpgradeStateOf(string body) => JsonNode.Parse(body)!["state"]!.GetValue<string>();

    /// <summary>A successor refuses a state saved for another cache directory, and stays in INIT (nothing installed).</summary>
    [Fact]
    public async Task A_successor_refuses_the_state_of_another_cache()
    {
        var socket = NextSocket();
        var current = Launch(socket, upgrade: false);
        await current.WaitForStateAsync(socket, "RUNNING", Wait);
        await SendFdAsync(socket);
        // The saved state, re-encoded for another cache dir, with the same descriptor.
        var state = HandoffState.Decode(_supervisor.State!);
        var other = state with { Fscache = new HandoffFscache("/elsewhere", "handoff") };
        using (var copy = File.OpenHandle(_dir.Combine("stand-in"), FileMode.Create, FileAccess.ReadWrite))
            _supervisor.Store(other.Encode(), copy);

        var nextSocket = NextSocket();
        var next = Launch(nextSocket, upgrade: true);
        await next.WaitForStateAsync(nextSocket, "INIT", Wait);
        var served = _supervisor.ServeNextRestore();
        using var api = new ApiClient(nextSocket, Wait);
        var (status, body) = await api.SendAsync("PUT", "/api/v1/daemon/fuse/takeover");
        await served.WaitAsync(Wait);
        output.WriteLine($"takeover: {status} {body}");
        Assert.Equal(500, status);
        Assert.Contains("/elsewhere", body);
        Assert.Equal("INIT", UpgradeStateOf(await StateAsync(nextSocket)));
        Assert.Equal("RUNNING", UpgradeStateOf(await StateAsync(socket)));
    }
}
