using System.Text.Json;
using Nydus.Actors.Api;

namespace Nydus.Actors.Tests.Support;

/// <summary>
/// A real nydusd serving an empty FUSE root (only <c>--mountpoint</c>), filled through the mount API, with a fixed
/// <c>--id</c> and work dir so that a second process can be started on the same state. Disposing stops the process
/// (SIGTERM, then kill) and detaches the mount whatever happened.
/// </summary>
public sealed class NydusdApiDaemon : IAsyncDisposable
{
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(60);

    private NydusdApiDaemon(string mountPoint, string apiSocket, NydusdProcess process)
    {
        MountPoint = mountPoint;
        ApiSocket = apiSocket;
        Process = process;
        Api = new ApiClient(apiSocket, TimeSpan.FromSeconds(60));
    }

    public string MountPoint { get; }
    public string ApiSocket { get; }
    public NydusdProcess Process { get; }
    public ApiClient Api { get; }

    /// <summary>Starts nydusd on <paramref name="dir"/>: mountpoint <c>mnt</c>, work dir <c>work</c>, socket
    /// <c>api-N.sock</c> (N counts the starts, so a successor never meets its predecessor's socket).</summary>
    public static Task<NydusdApiDaemon> StartAsync(TempDir dir, string id, int generation = 0, params string[] extraArgs) =>
        StartAsync(dir, id, null, generation, extraArgs);

    /// <summary>The same with extra environment variables for the process (e.g. runtime GC settings).</summary>
    public static async Task<NydusdApiDaemon> StartAsync(TempDir dir, string id, IReadOnlyDictionary<string, string>? environment,
        int generation = 0, params string[] extraArgs)
    {
        var mountPoint = dir.Combine("mnt");
        Directory.CreateDirectory(mountPoint);
        var socket = dir.Combine($"api-{generation}.sock");
        var process = NydusdProcess.StartIn(null, environment,
            ["--apisock", socket, "--id", id, "--work-dir", dir.Combine("work"), "-M", mountPoint, .. extraArgs]);
        var daemon = new NydusdApiDaemon(mountPoint, socket, process);
        try
        {
            await process.WaitForStateAsync(socket, "RUNNING", StartTimeout);
            return daemon;
        }
        catch
        {
            await daemon.DisposeAsync();
            throw;
        }
    }

    /// <summary>POST or PUT /api/v1/mount of a RAFS/EROFS bootstrap; returns status and body.</summary>
    public Task<(int Status, string Body)> MountAsync(string mountpoint, string bootstrap, string configJson, string method = "POST", string fsType = "rafs") =>
        Api.SendAsync(method, "/api/v1/mount?mountpoint=" + Uri.EscapeDataString(mountpoint),
            JsonSerializer.Serialize(new Dictionary<string, object> { ["source"] = bootstrap, ["fs_type"] = fsType, ["config"] = configJson }));

    public Task<(int Status, string Body)> UmountAsync(string mountpoint) =>
        Api.SendAsync("DELETE", "/api/v1/mount?mountpoint=" + Uri.EscapeDataString(mountpoint));

    /// <summary>The mountpoints of GET /api/v1/daemon's backend collection, sorted.</summary>
    public async Task<string[]> BackendMountpointsAsync()
    {
        var (status, body) = await Api.SendAsync("GET", "/api/v1/daemon");
        if (status != 200) throw new InvalidOperationException($"GET /api/v1/daemon answered {status}: {body}");
        using var doc = JsonDocument.Parse(body);
        var collection = doc.RootElement.GetProperty("backend_collection");
        var result = new List<string>();
        foreach (var backend in collection.EnumerateObject())
        {
            if (backend.Value.GetProperty("mountpoint").GetString() != backend.Name)
                throw new InvalidOperationException($"backend {backend.Name} reports mountpoint {backend.Value.GetProperty("mountpoint")}");
            result.Add(backend.Name);
        }
        return [.. result.Order(StringComparer.Ordinal)];
    }

    /// <summary>Stops the process with SIGTERM (it unmounts) and waits for it, bounded.</summary>
    public async Task StopAsync()
    {
        if (!Process.HasExited)
        {
            Process.Signal(NydusdProcess.SIGTERM);
            await Process.WaitForExitAsync(TimeSpan.FromSeconds(30));
        }
        NydusdMount.DetachIfMounted(MountPoint);
    }

    public async ValueTask DisposeAsync()
    {
        Api.Dispose();
        try
        {
            await StopAsync();
        }
        catch (TimeoutException)
        {
            // Killed by the process wrapper below; the mount is detached after it.
        }
        finally
        {
            await Process.DisposeAsync();
            NydusdMount.DetachIfMounted(MountPoint);
        }
    }
}
