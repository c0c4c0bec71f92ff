using Nydus.Actors.Api;
using Nydus.Actors.Tests.Support;

namespace Nydus.Actors.Tests.VirtioFs;

/// <summary>
/// A real <c>nydusd virtiofs</c> process on a socket in a temp dir (the upstream RAFS v6 fixture, or what the caller
/// names), optionally with its HTTP API (<c>--apisock</c>); killed on dispose (the sockets go with the temp dir).
/// </summary>
internal sealed class VirtioFsDaemon : IAsyncDisposable
{
    private readonly TempDir _dir;

    private VirtioFsDaemon(TempDir dir, NydusdProcess process, string socket, string? apiSocket)
    {
        _dir = dir;
        Process = process;
        Socket = socket;
        ApiSocket = apiSocket;
        Api = apiSocket is null ? null : new ApiClient(apiSocket, TimeSpan.FromSeconds(60));
    }

    public NydusdProcess Process { get; }

    public string Socket { get; }

    /// <summary>The <c>--apisock</c>, null when started without one.</summary>
    public string? ApiSocket { get; }

    public ApiClient? Api { get; }

    public string Dir => _dir.Path;

    public static Task<VirtioFsDaemon> StartWithV6FixtureAsync() => StartAsync(withApi: false, V6FixtureArgs);

    /// <summary>The upstream RAFS v6 fixture over its localfs blob directory, as command line flags.</summary>
    public static string[] V6FixtureArgs => ["--bootstrap", ImageFixtures.UpstreamFile("bootstrap", "rafs-v6-2.2.boot"), "--localfs-dir", ImageFixtures.UpstreamFile("blobs")];

    /// <summary>Starts <c>nydusd virtiofs --sock DIR/vhost.sock --thread-num 2 --work-dir DIR/work</c> with <paramref name="args"/> (and, with
    /// <paramref name="withApi"/>, <c>--apisock DIR/api.sock</c>); returns once it accepts VMMs.</summary>
    public static Task<VirtioFsDaemon> StartAsync(bool withApi, params string[] args) => StartAsync(withApi, workDir: null, args);

    /// <summary>The same with the daemon's work dir (journal) at <paramref name="workDir"/>, which outlives this daemon
    /// (a second one started on it mounts the journal's table again); null: inside the temp dir.</summary>
    public static async Task<VirtioFsDaemon> StartAsync(bool withApi, string? workDir, string[] args)
    {
        var dir = new TempDir("virtiofs");
        string socket = dir.Combine("vhost.sock");
        string? api = withApi ? dir.Combine("api.sock") : null;
        NydusdProcess? process = null;
        try
        {
            // The daemon's work dir (journal) inside the temp dir, so a killed daemon leaves nothing in /tmp.
            process = NydusdProcess.Start(["virtiofs", "--sock", socket, "--thread-num", "2", "--work-dir", workDir ?? dir.Combine("work"), .. (api is null ? Array.Empty<string>() : ["--apisock", api]), .. args]);
            DateTime deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
            while (!process.Output.Contains("virtio-fs served on"))
            {
                if (process.HasExited || DateTime.UtcNow > deadline)
                    throw new InvalidOperationException("nydusd virtiofs did not start: " + process.Output);
                await Task.Delay(50);
            }

            return new VirtioFsDaemon(dir, process, socket, api);
        }
        catch
        {
            if (process is not null) await process.DisposeAsync();
            dir.Dispose();
            throw;
        }
    }

    /// <summary>POST (or PUT) /api/v1/mount of the upstream RAFS v6 fixture at <paramref name="mountpoint"/>.</summary>
    public Task<(int Status, string Body)> MountV6FixtureAsync(string mountpoint, string method = "POST") =>
        MountAsync(mountpoint, ImageFixtures.UpstreamFile("bootstrap", "rafs-v6-2.2.boot"),
            Nydus.Actors.Config.NydusConfigLoader.CreateLocalFsDirConfigText(ImageFixtures.UpstreamFile("blobs")), method);

    public Task<(int Status, string Body)> MountAsync(string mountpoint, string bootstrap, string configJson, string method = "POST") =>
        Api!.SendAsync(method, "/api/v1/mount?mountpoint=" + Uri.EscapeDataString(mountpoint),
            System.Text.Json.JsonSerializer.Serialize(new Dictionary<string, object> { ["source"] = bootstrap, ["fs_type"] = "rafs", ["config"] = configJson }));

    public Task<(int Status, string Body)> UmountAsync(string mountpoint) =>
        Api!.SendAsync("DELETE", "/api/v1/mount?mountpoint=" + Uri.EscapeDataString(mountpoint));

    /// <summary>GET /api/v1/daemon as JSON (state, backend_collection).</summary>
    public async Task<System.Text.Json.JsonElement> DaemonInfoAsync()
    {
        var (status, body) = await Api!.SendAsync("GET", "/api/v1/daemon");
        if (status != 200) throw new InvalidOperationException($"GET /api/v1/daemon answered {status}: {body}");
        return System.Text.Json.JsonDocument.Parse(body).RootElement.Clone();
    }

    /// <summary>A fresh guest-memory file path in /dev/shm (the test frontend creates and deletes it).</summary>
    public static string NewMemoryPath() => Path.Combine("/dev/shm", $"nydus-virtiofs-test-{Guid.NewGuid():N}");

    /// <summary>Lines of /proc/PID/maps that map <paramref name="path"/>.</summary>
    public int MappingsOf(string path) => File.ReadLines($"/proc/{Process.Pid}/maps").Count(l => l.Contains(path, StringComparison.Ordinal));

    /// <summary>What each open descriptor of the daemon refers to (readlink of /proc/PID/fd/N).</summary>
    public string[] DescriptorTargets() => Directory.GetFiles($"/proc/{Process.Pid}/fd")
        .Select(fd => { try { return new FileInfo(fd).LinkTarget ?? "?"; } catch (IOException) { return "(closed)"; } })
        .ToArray();

    public async ValueTask DisposeAsync()
    {
        Api?.Dispose();
        await Process.DisposeAsync();
        _dir.Dispose();
    }
}
