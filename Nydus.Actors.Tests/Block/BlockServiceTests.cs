using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using Nydus.Actors.Config;
using Nydus.Actors.Tests.Support;
using Xunit;

namespace Nydus.Actors.Tests.Block;

/// <summary>
/// The daemon's block service with real processes: a built nydusd serving NBD exports added through its API and
/// `nydusd ctl`, read by libnbd's nbdcopy/nbdinfo and compared with what `nydusd export --block` writes for the same
/// image; restarts on the same work dir serve the same exports; bad input is a 4xx and changes nothing.
/// </summary>
public sealed class BlockServiceTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    private static string FixtureConfig => NydusConfigLoader.CreateLocalFsDirConfigText(UpstreamBlockImage.BlobDir);

    [FuseFact]
    public async Task Api_exports_serve_the_exported_device_and_a_restart_serves_them_again()
    {
        using var dir = new TempDir("blksvc");
        var id = "blk-" + Guid.NewGuid().ToString("N")[..8];
        string socket = dir.Combine("img.nbd");
        byte[] expected = await ExportBlockAsync(dir, UpstreamBlockImage.Bootstrap, "--localfs-dir", UpstreamBlockImage.BlobDir);
        Assert.True(UpstreamBlockImage.ExpectedDevice.AsSpan().SequenceEqual(expected), "nydusd export --block differs from the independently built device");

        string tcpAddress;
        await using (var daemon = await NydusdApiDaemon.StartAsync(dir, id))
        {
            var (status, body) = await ExportAsync(daemon, new { name = "img", source = UpstreamBlockImage.Bootstrap, config = FixtureConfig, nbd_socket = socket });
            Assert.True(status == 200, body);
            (status, body) = await ExportAsync(daemon, new { name = "tcp", source = UpstreamBlockImage.Bootstrap, config = FixtureConfig, nbd_tcp = "127.0.0.1:0" });
            Assert.True(status == 200, body);
            using (var entry = JsonDocument.Parse(body))
            {
                tcpAddress = entry.RootElement.GetProperty("nbd_tcp").GetString()!;
                Assert.Equal(expected.Length, entry.RootElement.GetProperty("size").GetInt64());
            }
            Assert.NotEqual("127.0.0.1:0", tcpAddress);

            Assert.Equal(expected, Copy(dir, $"nbd+unix:///img?socket={socket}"));
            Assert.Equal(expected, Copy(dir, $"nbd://{tcpAddress}/tcp"));
            // A Unix socket's exports are its own: the TCP export is not listed there.
            using (var list = JsonDocument.Parse(TreeBuilder.Run("nbdinfo", "--list", "--json", $"nbd+unix:///?socket={socket}")))
                Assert.Equal(["img"], list.RootElement.GetProperty("exports").EnumerateArray().Select(e => e.GetProperty("export-name").GetString()!));

            var listed = await ListAsync(daemon);
            Assert.Equal(["img", "tcp"], listed.Select(e => e.Name));
            Assert.All(listed, e => Assert.Equal("serving", e.State));

            await daemon.StopAsync();
            Assert.False(File.Exists(socket), "the NBD socket was left behind after SIGTERM");
        }

        // The records carry the config (sealed like mount configs): no path of it is readable in the journal files.
        foreach (var file in Directory.GetFiles(dir.Combine("work"), "*.db*"))
            Assert.DoesNotContain(UpstreamBlockImage.BlobDir, System.Text.Encoding.UTF8.GetString(File.ReadAllBytes(file)));

        await using (var daemon = await NydusdApiDaemon.StartAsync(dir, id, generation: 1))
        {
            var listed = await WaitServingAsync(daemon);
            Assert.Equal(["img", "tcp"], listed.Select(e => e.Name));
            Assert.Equal(tcpAddress, listed[1].Address);
            Assert.Equal(expected, Copy(dir, $"nbd+unix:///img?socket={socket}"));
            Assert.Equal(expected, Copy(dir, $"nbd://{tcpAddress}/tcp"));

            var (status, body) = await daemon.Api.SendAsync("DELETE", "/api/v1/block/exports?name=img");
            Assert.True(status == 204, body);
            Assert.False(File.Exists(socket), "the listener of the last export on the socket stays open");
            Assert.Equal(["tcp"], (await ListAsync(daemon)).Select(e => e.Name));
        }

        await using (var daemon = await NydusdApiDaemon.StartAsync(dir, id, generation: 2))
        {
            var listed = await WaitServingAsync(daemon);
            Assert.Equal(["tcp"], listed.Select(e => e.Name));
            Assert.Equal(expected, Copy(dir, $"nbd://{tcpAddress}/tcp"));
        }
    }

    [FuseFact]
    public async Task Ctl_exports_a_mounted_instance_by_mountpoint_and_removes_it()
    {
        using var dir = new TempDir("blkctl");
        var id = "blk-" + Guid.NewGuid().ToString("N")[..8];
        string socket = dir.Combine("a.nbd");
        byte[] expected = UpstreamBlockImage.ExpectedDevice;
        await using var daemon = await NydusdApiDaemon.StartAsync(dir, id);
        var (status, body) = await daemon.MountAsync("/a", UpstreamBlockImage.Bootstrap, FixtureConfig);
        Assert.True(status == 204, body);

        var (code, output) = await NydusdProcess.RunAsync(Timeout, "ctl", "-S", daemon.ApiSocket, "block-export", "a", "--mountpoint", "/a", "--nbd-socket", socket);
        Assert.True(code == 0, output);
        Assert.Equal(expected, Copy(dir, $"nbd+unix:///a?socket={socket}"));
        // The FUSE mount still serves beside it.
        Assert.Equal(UpstreamBlockImage.LibRsMd5, UpstreamBlockImage.Md5(File.ReadAllBytes(Path.Combine(daemon.MountPoint, "a", "lib.rs"))));

        (code, output) = await NydusdProcess.RunAsync(Timeout, "ctl", "-S", daemon.ApiSocket, "block-exports");
        Assert.True(code == 0, output);
        Assert.Contains("\"mountpoint\":\"/a\"", output);

        (code, output) = await NydusdProcess.RunAsync(Timeout, "ctl", "-S", daemon.ApiSocket, "block-unexport", "a");
        Assert.True(code == 0, output);
        Assert.False(File.Exists(socket));
        (code, output) = await NydusdProcess.RunAsync(Timeout, "ctl", "-S", daemon.ApiSocket, "block-unexport", "a");
        Assert.Equal(1, code);
        Assert.Contains("NotFound", output);
        (code, output) = await NydusdProcess.RunAsync(Timeout, "ctl", "-S", daemon.ApiSocket, "block-export", "b", "--mountpoint", "/a");
        Assert.Equal(2, code);
        Assert.Contains("--nbd-socket", output);
    }

    [FuseFact]
    public async Task Bad_input_is_a_clear_4xx_and_changes_nothing()
    {
        using var dir = new TempDir("blkbad");
        var id = "blk-" + Guid.NewGuid().ToString("N")[..8];
        string socket = dir.Combine("ok.nbd");
        await using var daemon = await NydusdApiDaemon.StartAsync(dir, id);
        var (status, body) = await ExportAsync(daemon, new { name = "ok", source = UpstreamBlockImage.Bootstrap, config = FixtureConfig, nbd_socket = socket });
        Assert.True(status == 200, body);

        // Another process's listeners: a live Unix socket and a TCP port.
        string foreign = dir.Combine("foreign.nbd");
        using var foreignUnix = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        foreignUnix.Bind(new UnixDomainSocketEndPoint(foreign));
        foreignUnix.Listen(1);
        using var foreignTcp = new TcpListener(IPAddress.Loopback, 0);
        foreignTcp.Start();
        string takenPort = ((IPEndPoint)foreignTcp.LocalEndpoint).Port.ToString();
        string missing = dir.Combine("missing.boot");
        string other = dir.Combine("other.nbd");

        var cases = new (object Body, int Status, string Says)[]
        {
            (new { name = "x", source = missing, config = FixtureConfig, nbd_socket = other }, 400, missing),
            (new { name = "x", mountpoint = "/nothing", nbd_socket = other }, 404, "/nothing"),
            (new { name = "ok", source = UpstreamBlockImage.Bootstrap, config = FixtureConfig, nbd_socket = other }, 409, "'ok'"),
            (new { name = "x", source = UpstreamBlockImage.Bootstrap, config = FixtureConfig, nbd_socket = foreign }, 409, foreign),
            (new { name = "x", source = UpstreamBlockImage.Bootstrap, config = FixtureConfig, nbd_tcp = "127.0.0.1:" + takenPort }, 409, takenPort),
            (new { name = "x", source = UpstreamBlockImage.Bootstrap, config = "{not json", nbd_socket = other }, 400, "config"),
            (new { name = "x", source = UpstreamBlockImage.Bootstrap, config = FixtureConfig }, 400, "nbd_socket"),
            (new { name = "x", source = UpstreamBlockImage.Bootstrap, config = FixtureConfig, nbd_tcp = "localhost:99" }, 400, "nbd_tcp"),
            (new { name = "", source = UpstreamBlockImage.Bootstrap, config = FixtureConfig, nbd_socket = other }, 400, "name"),
            (new { name = "x", source = "relative.boot", config = FixtureConfig, nbd_socket = other }, 400, "absolute"),
        };
        foreach (var (request, expectedStatus, says) in cases)
        {
            (status, body) = await ExportAsync(daemon, request);
            Assert.True(status == expectedStatus, $"{JsonSerializer.Serialize(request)} answered {status}: {body}");
            Assert.Contains(says, body);
        }
        (status, body) = await daemon.Api.SendAsync("DELETE", "/api/v1/block/exports?name=nope");
        Assert.Equal(404, status);

        Assert.False(File.Exists(other), "a refused export left a socket behind");
        Assert.Equal(["ok"], (await ListAsync(daemon)).Select(e => e.Name));
        Assert.Equal(UpstreamBlockImage.ExpectedDevice, Copy(dir, $"nbd+unix:///ok?socket={socket}"));
    }

    [FuseFact]
    public async Task A_full_disk_answers_507_serves_nothing_new_and_the_same_request_works_with_space_again()
    {
        using var dir = new TempDir("blkfull");
        var id = "blk-" + Guid.NewGuid().ToString("N")[..8];
        string socket = dir.Combine("full.nbd");
        using var tmpfs = Nydus.Actors.Tests.Host.PersistenceFaultTests.SmallTmpfs.Mount(dir.Combine("work"), sizeKiB: 2048);
        await using (var daemon = await NydusdApiDaemon.StartAsync(dir, id))
        {
            var request = new { name = "img", source = UpstreamBlockImage.Bootstrap, config = FixtureConfig, nbd_socket = socket };
            tmpfs.Fill();
            var (status, body) = await ExportAsync(daemon, request);
            Assert.True(status == 507, $"{status} {body}");
            Assert.Contains("full", body, StringComparison.OrdinalIgnoreCase);
            Assert.False(File.Exists(socket), "an export the journal did not record is served");
            Assert.Empty(await ListAsync(daemon));

            tmpfs.Free();
            (status, body) = await ExportAsync(daemon, request);
            Assert.True(status == 200, body);
            Assert.Equal(UpstreamBlockImage.ExpectedDevice, Copy(dir, $"nbd+unix:///img?socket={socket}"));
            Assert.False(daemon.Process.HasExited, daemon.Process.Output);
            await daemon.StopAsync();
        }

        await using var next = await NydusdApiDaemon.StartAsync(dir, id, generation: 1);
        Assert.Equal(["img"], (await WaitServingAsync(next)).Select(e => e.Name));
        Assert.Equal(UpstreamBlockImage.ExpectedDevice, Copy(dir, $"nbd+unix:///img?socket={socket}"));
    }

    [Fact]
    public async Task A_singleton_serves_exports_too_and_sigterm_closes_them()
    {
        using var dir = new TempDir("blksing");
        string api = dir.Combine("api.sock"), socket = dir.Combine("s.nbd");
        await using var process = NydusdProcess.Start(["singleton", "--apisock", api, "--id", "blk-" + Guid.NewGuid().ToString("N")[..8], "--work-dir", dir.Combine("work")]);
        await process.WaitForStateAsync(api, "RUNNING", Timeout);
        using var client = new Nydus.Actors.Api.ApiClient(api, Timeout);
        var (status, body) = await client.SendAsync("POST", "/api/v1/block/exports",
            JsonSerializer.Serialize(new { name = "s", source = UpstreamBlockImage.Bootstrap, config = FixtureConfig, nbd_socket = socket }));
        Assert.True(status == 200, body);
        Assert.Equal(UpstreamBlockImage.ExpectedDevice, Copy(dir, $"nbd+unix:///s?socket={socket}"));
        process.Signal(NydusdProcess.SIGTERM);
        Assert.Equal(0, await process.WaitForExitAsync(Timeout));
        Assert.False(File.Exists(socket), "the NBD socket was left behind");
    }

    internal static async Task<(int Status, string Body)> ExportAsync(NydusdApiDaemon daemon, object body) =>
        await daemon.Api.SendAsync("POST", "/api/v1/block/exports", JsonSerializer.Serialize(body));

    internal sealed record Listed(string Name, string State, string Address, string? Error);

    internal static Task<Listed[]> ListAsync(NydusdApiDaemon daemon) => ListAsync(daemon.Api);

    internal static async Task<Listed[]> ListAsync(Nydus.Actors.Api.ApiClient api)
    {
        var (status, body) = await api.SendAsync("GET", "/api/v1/block/exports");
        Assert.True(status == 200, body);
        using var doc = JsonDocument.Parse(body);
        return [.. doc.RootElement.GetProperty("exports").EnumerateArray().Select(e => new Listed(
            e.GetProperty("name").GetString()!, e.GetProperty("state").GetString()!,
            e.GetProperty("nbd_socket").GetString() ?? e.GetProperty("nbd_tcp").GetString()!,
            e.GetProperty("error").GetString()))];
    }

    private static Task<Listed[]> WaitServingAsync(NydusdApiDaemon daemon) => WaitServingAsync(daemon.Api);

    /// <summary>A restarted daemon restores its exports in the background: wait (bounded) until it serves.</summary>
    internal static async Task<Listed[]> WaitServingAsync(Nydus.Actors.Api.ApiClient api)
    {
        var deadline = DateTime.UtcNow + Timeout;
        while (true)
        {
            var (status, body) = await api.SendAsync("GET", "/api/v1/block/exports");
            if (status == 200 && JsonDocument.Parse(body).RootElement.GetProperty("state").GetString() == "serving")
            {
                var listed = await ListAsync(api);
                Assert.All(listed, e => Assert.True(e.State == "serving", $"{e.Name}: {e.State} {e.Error}"));
                return listed;
            }
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"the block service did not serve within {Timeout}: {status} {body}");
            await Task.Delay(100);
        }
    }

    /// <summary>What `nydusd export --block` writes for the image (the reference for every NBD read).</summary>
    internal static async Task<byte[]> ExportBlockAsync(TempDir dir, string bootstrap, params string[] configArgs)
    {
        string output = dir.Combine($"export-{Guid.NewGuid().ToString("N")[..6]}.img");
        var (code, text) = await NydusdProcess.RunAsync(Timeout, ["export", "--block", "--bootstrap", bootstrap, .. configArgs, "--output", output]);
        Assert.True(code == 0, text);
        byte[] bytes = File.ReadAllBytes(output);
        File.Delete(output);
        return bytes;
    }

    /// <summary>nbdcopy of the whole export into a file, returned as bytes.</summary>
    internal static byte[] Copy(TempDir dir, string uri)
    {
        string output = dir.Combine($"copy-{Guid.NewGuid().ToString("N")[..6]}.img");
        TreeBuilder.Run("nbdcopy", uri, output);
        byte[] bytes = File.ReadAllBytes(output);
        File.Delete(output);
        return bytes;
    }
}
