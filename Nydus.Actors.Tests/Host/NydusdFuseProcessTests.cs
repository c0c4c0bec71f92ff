using System.Text.Json;
using Nydus.Actors.Api;
using Nydus.Actors.Tests.Support;
using Xunit;

namespace Nydus.Actors.Tests.Host;

/// <summary>The real nydusd serving a FUSE mount: its life cycle through the state machine, seen from outside.</summary>
public sealed class NydusdFuseProcessTests : IDisposable
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(30);
    private readonly TempDir _dir = new("fuse-host");

    private static bool IsMounted(string path) => NydusdMount.IsListedInMounts(path);

    [Fact]
    public async Task A_mountpoint_below_the_working_directory_does_not_deadlock_start_up()
    {
        // Regression: the HTTP host watched its content root (the working directory) and so stat'ed the daemon's
        // own mount before any worker could answer, hanging the process in the kernel.
        var shared = Directory.CreateDirectory(_dir.Combine("shared")).FullName;
        File.WriteAllText(Path.Combine(shared, "hello.txt"), "hello");
        var mnt = Directory.CreateDirectory(_dir.Combine("sub", "mnt")).FullName;
        var sock = _dir.Combine("api.sock");
        await using var daemon = NydusdProcess.StartIn(_dir.Path, "--apisock", sock, "--mountpoint", mnt,
            "--shared-dir", shared, "--work-dir", _dir.Combine("work"));
        try
        {
            await daemon.WaitForStateAsync(sock, "RUNNING", Wait);
            Assert.True(IsMounted(mnt));
            Assert.Equal("hello", await File.ReadAllTextAsync(Path.Combine(mnt, "hello.txt")));

            using var client = new ApiClient(sock);
            var (_, body) = await client.SendAsync("GET", "/api/v1/daemon");
            var backend = JsonDocument.Parse(body).RootElement.GetProperty("backend_collection").GetProperty("/");
            Assert.Equal("PassthroughFs", backend.GetProperty("backend_type").GetString());

            // A signal unmounts on the way out.
            daemon.Signal(NydusdProcess.SIGTERM);
            Assert.Equal(0, await daemon.WaitForExitAsync(Wait));
            Assert.False(IsMounted(mnt), "SIGTERM must unmount");
        }
        finally
        {
            if (IsMounted(mnt)) FuseTestMount.Detach(mnt);
        }
    }

    [Fact]
    public async Task Api_exit_leaves_without_unmounting()
    {
        // Upstream's exit is how an old daemon leaves a live upgrade: the kernel mount stays (dead until a successor
        // takes the descriptor), so the test detaches it itself.
        var shared = Directory.CreateDirectory(_dir.Combine("shared")).FullName;
        var mnt = Directory.CreateDirectory(_dir.Combine("mnt")).FullName;
        var sock = _dir.Combine("api.sock");
        await using var daemon = NydusdProcess.Start("--apisock", sock, "--mountpoint", mnt, "--shared-dir", shared,
            "--work-dir", _dir.Combine("work"));
        try
        {
            await daemon.WaitForStateAsync(sock, "RUNNING", Wait);
            using var client = new ApiClient(sock);
            Assert.Equal(204, (await client.SendAsync("PUT", "/api/v1/daemon/exit")).Status);
            Assert.Equal(0, await daemon.WaitForExitAsync(Wait));
            Assert.True(IsMounted(mnt), "exit must not unmount");
        }
        finally
        {
            if (IsMounted(mnt)) FuseTestMount.Detach(mnt);
        }
    }

    [Fact]
    public async Task A_failure_after_the_kernel_mount_takes_the_mount_back()
    {
        // The API socket path is a directory: binding fails after the FUSE mount was made.
        var shared = Directory.CreateDirectory(_dir.Combine("shared")).FullName;
        var mnt = Directory.CreateDirectory(_dir.Combine("mnt")).FullName;
        var sockDir = Directory.CreateDirectory(_dir.Combine("api.sock")).FullName;
        try
        {
            var (code, output) = await NydusdProcess.RunAsync(Wait, "--apisock", sockDir, "--mountpoint", mnt,
                "--shared-dir", shared, "--work-dir", _dir.Combine("work"));
            Assert.Equal(1, code);
            Assert.Contains($"API socket path {sockDir} is a directory", output);
            Assert.False(IsMounted(mnt), "a failed start must not leave its FUSE mount behind");
        }
        finally
        {
            if (IsMounted(mnt)) FuseTestMount.Detach(mnt);
        }
    }

    public void Dispose() => _dir.Dispose();
}
