using Nydus.Actors.Tests.Support;

namespace Nydus.Actors.Tests.VirtioFs;

/// <summary>A real <c>nydusd virtiofs</c> process on a socket in a temp dir, serving the upstream RAFS v6 fixture; killed on dispose.</summary>
internal sealed class VirtioFsDaemon : IAsyncDisposable
{
    private readonly TempDir _dir;

    private VirtioFsDaemon(TempDir dir, NydusdProcess process, string socket)
    {
        _dir = dir;
        Process = process;
        Socket = socket;
    }

    public NydusdProcess Process { get; }

    public string Socket { get; }

    public string Dir => _dir.Path;

    public static async Task<VirtioFsDaemon> StartWithV6FixtureAsync()
    {
        var dir = new TempDir("virtiofs");
        string socket = dir.Combine("vhost.sock");
        NydusdProcess? process = null;
        try
        {
            process = NydusdProcess.Start("virtiofs", "--sock", socket, "--thread-num", "2",
                "--bootstrap", ImageFixtures.UpstreamFile("bootstrap", "rafs-v6-2.2.boot"), "--localfs-dir", ImageFixtures.UpstreamFile("blobs"));
            DateTime deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
            while (!process.Output.Contains("virtio-fs served on"))
            {
                if (process.HasExited || DateTime.UtcNow > deadline)
                    throw new InvalidOperationException("nydusd virtiofs did not start: " + process.Output);
                await Task.Delay(50);
            }

            return new VirtioFsDaemon(dir, process, socket);
        }
        catch
        {
            if (process is not null) await process.DisposeAsync();
            dir.Dispose();
            throw;
        }
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
        await Process.DisposeAsync();
        _dir.Dispose();
    }
}
