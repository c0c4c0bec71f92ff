using Nydus.Actors.Interop;

namespace Nydus.Actors.Tests.Support;

/// <summary>
/// A real nydusd process serving one RAFS/EROFS bootstrap at a fresh mountpoint under the temp dir. Starting waits
/// until the API reports RUNNING; disposing sends SIGTERM (nydusd unmounts on the way out), and whatever is left
/// (a hung daemon, a mount) is killed and detached, so a failing test leaves nothing behind.
/// </summary>
public sealed class NydusdMount : IAsyncDisposable
{
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(60);
    private static readonly TimeSpan StopTimeout = TimeSpan.FromSeconds(20);

    private readonly TempDir _dir;

    private NydusdMount(TempDir dir, NydusdProcess process)
    {
        _dir = dir;
        Process = process;
    }

    public NydusdProcess Process { get; }

    /// <summary>Runs nydusd on arguments expected to fail at start: its exit code and whole console output.</summary>
    public static async Task<(int ExitCode, string Output)> RunExpectingFailureAsync(string mountPoint, params string[] args)
    {
        await using NydusdProcess process = NydusdProcess.Start(["-M", mountPoint, .. args]);
        int code = await process.WaitForExitAsync(StartTimeout);
        return (code, process.Output);
    }

    public string MountPoint => _dir.Combine("mnt");

    public string ApiSocket => _dir.Combine("api.sock");

    /// <summary>A scratch directory next to the mount for configs and copies of blobs; removed on dispose.</summary>
    public string Scratch => _dir.Path;

    public bool IsMounted => IsListedInMounts(MountPoint);

    /// <summary>Serves <paramref name="bootstrap"/> with the localfs backend on <paramref name="blobDir"/>.</summary>
    public static Task<NydusdMount> StartWithLocalFsDirAsync(string bootstrap, string blobDir) =>
        StartAsync(bootstrap, _ => ["--localfs-dir", blobDir]);

    /// <summary>Serves <paramref name="bootstrap"/> with a JSON configuration written to a file first.</summary>
    public static Task<NydusdMount> StartWithConfigAsync(string bootstrap, string configJson, params string[] extraArgs) =>
        StartAsync(bootstrap, scratch =>
        {
            string file = Path.Combine(scratch, "config.json");
            File.WriteAllText(file, configJson);
            return ["--config", file, .. extraArgs];
        });

    private static async Task<NydusdMount> StartAsync(string bootstrap, Func<string, string[]> backendArgs)
    {
        var dir = new TempDir("nydusd-mount");
        NydusdProcess? process = null;
        try
        {
            Directory.CreateDirectory(dir.Combine("mnt"));
            process = NydusdProcess.Start(
            [
                "--apisock", dir.Combine("api.sock"), "--work-dir", dir.Combine("work"), "-M", dir.Combine("mnt"),
                "--bootstrap", bootstrap, .. backendArgs(dir.Path),
            ]);
            var mount = new NydusdMount(dir, process);
            try
            {
                await process.WaitForStateAsync(mount.ApiSocket, "RUNNING", StartTimeout);
            }
            catch (InvalidOperationException) when (process.HasExited)
            {
                // The exit can be seen before the last console lines arrive; waiting for exit drains them.
                int code = await process.WaitForExitAsync(StopTimeout);
                string output = process.Output;
                await mount.DisposeAsync();
                throw new NydusdStartException(code, output);
            }
            catch
            {
                await mount.DisposeAsync();
                throw;
            }

            return mount;
        }
        catch when (process is null)
        {
            dir.Dispose();
            throw;
        }
    }

    /// <summary>JSON string literal for embedding a path in a config.</summary>
    public static string Json(string value) => System.Text.Json.JsonSerializer.Serialize(value);

    public static bool IsListedInMounts(string mountPoint) =>
        File.ReadLines("/proc/self/mounts").Any(line => line.Split(' ')[1] == mountPoint);

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (!Process.HasExited)
            {
                Process.Signal(NydusdProcess.SIGTERM);
                try
                {
                    await Process.WaitForExitAsync(StopTimeout);
                }
                catch (TimeoutException)
                {
                    // Killed below by the process wrapper; the mount is detached after it.
                }
            }
        }
        finally
        {
            await Process.DisposeAsync();
            DetachIfMounted(MountPoint);
            _dir.Dispose();
        }
    }

    /// <summary>umount2(MNT_DETACH) until /proc/self/mounts no longer lists the path (never stat()s it).</summary>
    public static void DetachIfMounted(string mountPoint)
    {
        DateTime deadline = DateTime.UtcNow + StopTimeout;
        while (IsListedInMounts(mountPoint))
        {
            Libc.Umount2(mountPoint, Libc.MNT_DETACH);
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"{mountPoint} is still mounted");
            }

            Thread.Sleep(10);
        }
    }
}
