using Nydus.Actors.Api;
using Nydus.Actors.Tests.Block;
using Nydus.Actors.Tests.Support;
using Nydus.Actors.Upgrade;
using Xunit;

namespace Nydus.Actors.Tests.Upgrade;

/// <summary>
/// The block service across upstream's live upgrade (§4.5) with real processes: exports made on the old daemon are
/// served by its successor on the same addresses (clients reconnect: the successor binds them once it runs, after
/// its predecessor has exited), and what NBD clients read equals `nydusd export --block` of the image before and after.
/// </summary>
[Collection("upgrade")]
public sealed class BlockServiceUpgradeTests
{
    [FuseFact]
    public async Task Exports_survive_a_live_upgrade_on_the_same_addresses()
    {
        await using var rig = await UpgradeRig.StartAsync();
        using var dir = new TempDir("blkupg");
        string socket = dir.Combine("root.nbd");
        byte[] expected = await BlockServiceTests.ExportBlockAsync(dir, rig.Image, "--localfs-dir", rig.Source);

        string tcpAddress;
        using (var api = new ApiClient(rig.CurrentSocket, UpgradeRig.Wait))
        {
            // The command line's instance, by its virtual mountpoint, on a Unix socket; a bootstrap given directly on TCP.
            var (status, body) = await api.SendAsync("POST", "/api/v1/block/exports",
                System.Text.Json.JsonSerializer.Serialize(new { name = "root", mountpoint = "/", nbd_socket = socket }));
            Assert.True(status == 200, body);
            (status, body) = await api.SendAsync("POST", "/api/v1/block/exports", System.Text.Json.JsonSerializer.Serialize(new
            {
                name = "direct", source = rig.Image, config = Nydus.Actors.Config.NydusConfigLoader.CreateLocalFsDirConfigText(rig.Source),
                nbd_tcp = "127.0.0.1:0",
            }));
            Assert.True(status == 200, body);
            tcpAddress = (await BlockServiceTests.ListAsync(api)).Single(e => e.Name == "direct").Address;
        }
        Assert.Equal(expected, BlockServiceTests.Copy(dir, $"nbd+unix:///root?socket={socket}"));
        Assert.Equal(expected, BlockServiceTests.Copy(dir, $"nbd://{tcpAddress}/direct"));
        int oldPid = rig.Current.Pid;

        await rig.UpgradeAsync();
        Assert.NotEqual(oldPid, rig.Current.Pid);

        using (var api = new ApiClient(rig.CurrentSocket, UpgradeRig.Wait))
        {
            var listed = await BlockServiceTests.WaitServingAsync(api);
            Assert.Equal(["direct", "root"], listed.Select(e => e.Name));
            Assert.Equal(tcpAddress, listed[0].Address);
        }
        Assert.Equal(expected, BlockServiceTests.Copy(dir, $"nbd+unix:///root?socket={socket}"));
        Assert.Equal(expected, BlockServiceTests.Copy(dir, $"nbd://{tcpAddress}/direct"));

        // And once more: the successor's journal (written since it runs) is what the next one restores.
        await rig.UpgradeAsync();
        using (var api = new ApiClient(rig.CurrentSocket, UpgradeRig.Wait))
            Assert.Equal(["direct", "root"], (await BlockServiceTests.WaitServingAsync(api)).Select(e => e.Name));
        Assert.Equal(expected, BlockServiceTests.Copy(dir, $"nbd+unix:///root?socket={socket}"));
    }

    [FuseFact]
    public async Task Exports_ride_in_the_handoff_state_and_a_reading_client_reconnects_across_the_upgrade()
    {
        await using var rig = await UpgradeRig.StartAsync();
        using var dir = new TempDir("blkhandoff");
        string socket = dir.Combine("root.nbd");
        byte[] expected = await BlockServiceTests.ExportBlockAsync(dir, rig.Image, "--localfs-dir", rig.Source);
        using (var api = new ApiClient(rig.CurrentSocket, UpgradeRig.Wait))
        {
            var (status, body) = await api.SendAsync("POST", "/api/v1/block/exports",
                System.Text.Json.JsonSerializer.Serialize(new { name = "root", mountpoint = "/", nbd_socket = socket }));
            Assert.True(status == 200, body);
        }

        // The supervisor saves the state again after a change (as nydus-snapshotter does after a mount): the export is in it.
        await rig.SendFdAsync();
        HandoffState saved = HandoffState.Decode(rig.Supervisor.State);
        Assert.NotNull(saved.BlockExports);
        Assert.Equal([("root", socket, (string?)"/")], saved.BlockExports.Select(e => (e.Name, e.Address, e.Mountpoint)));

        // A client reads before the upgrade; its connection ends with the old daemon; it reconnects to the same
        // socket (the successor binds it once it runs) and reads the same bytes.
        using (var before = Connect(socket))
            ReadWhole(before, expected);
        var reading = Connect(socket);
        try
        {
            ReadWhole(reading, expected, length: 1 << 20);
            await rig.UpgradeAsync();
            Assert.True(reading.IsClosedByServer(), "the old daemon's connection outlived it");
        }
        finally
        {
            reading.Dispose();
        }

        using (var after = await ReconnectAsync(socket))
            ReadWhole(after, expected);
        Assert.Contains("Restoring 1 block exports from the handoff state", rig.Current.Output);
        using (var api = new ApiClient(rig.CurrentSocket, UpgradeRig.Wait))
            Assert.Equal(["root"], (await BlockServiceTests.WaitServingAsync(api)).Select(e => e.Name));

        // Changes after the last sendfd: the successor serves the saved table at once, then the journal's (which its
        // predecessor wrote up to its exit): "late" is served, "root" is not.
        string late = dir.Combine("late.nbd");
        using (var api = new ApiClient(rig.CurrentSocket, UpgradeRig.Wait))
        {
            var (status, body) = await api.SendAsync("POST", "/api/v1/block/exports",
                System.Text.Json.JsonSerializer.Serialize(new { name = "late", source = rig.Image, config = Nydus.Actors.Config.NydusConfigLoader.CreateLocalFsDirConfigText(rig.Source), nbd_socket = late }));
            Assert.True(status == 200, body);
            (status, body) = await api.SendAsync("DELETE", "/api/v1/block/exports?name=root");
            Assert.True(status == 204, body);
        }

        // UpgradeAsync takes over with the state saved at the end of the previous upgrade: it lists "root" only.
        Assert.Equal(["root"], HandoffState.Decode(rig.Supervisor.State).BlockExports!.Select(e => e.Name));
        await rig.UpgradeAsync();
        using (var api = new ApiClient(rig.CurrentSocket, UpgradeRig.Wait))
            Assert.Equal(["late"], (await BlockServiceTests.WaitServingAsync(api)).Select(e => e.Name));
        Assert.Contains("was removed after the handoff state was saved", rig.Current.Output);
        Assert.Equal(expected, BlockServiceTests.Copy(dir, $"nbd+unix:///late?socket={late}"));
        Assert.False(File.Exists(socket), "the socket of the export removed before the upgrade is still there");
    }

    private static NbdTestClient Connect(string socket)
    {
        var client = new NbdTestClient(socket);
        try
        {
            client.Greet();
            Assert.Equal(1u, client.Go("root"));
            return client;
        }
        catch
        {
            client.Dispose();
            throw;
        }
    }

    /// <summary>Connects once the socket answers again (bounded by the rig's wait).</summary>
    private static async Task<NbdTestClient> ReconnectAsync(string socket)
    {
        var deadline = DateTime.UtcNow + UpgradeRig.Wait;
        while (true)
        {
            try
            {
                return Connect(socket);
            }
            catch (Exception e) when (e is System.Net.Sockets.SocketException or IOException or InvalidDataException && DateTime.UtcNow < deadline)
            {
                await Task.Delay(100);
            }
        }
    }

    /// <summary>Reads the device (or its first <paramref name="length"/> bytes) in 256 KiB requests and compares.</summary>
    private static void ReadWhole(NbdTestClient client, byte[] expected, int? length = null)
    {
        int end = Math.Min(length ?? expected.Length, expected.Length);
        const int step = 256 << 10;
        ulong cookie = 0;
        for (int at = 0; at < end; at += step)
        {
            int n = Math.Min(step, end - at);
            client.SendRequest(0, ++cookie, (ulong)at, (uint)n);
            Assert.Equal((0u, cookie), client.ReceiveSimpleReply());
            Assert.True(expected.AsSpan(at, n).SequenceEqual(client.Receive(n)), $"bytes at {at} differ");
        }
    }

    [FuseFact]
    public async Task Exports_are_served_again_after_a_crash_failover()
    {
        await using var rig = await UpgradeRig.StartAsync();
        using var dir = new TempDir("blkfail");
        string socket = dir.Combine("root.nbd");
        byte[] expected = await BlockServiceTests.ExportBlockAsync(dir, rig.Image, "--localfs-dir", rig.Source);
        using (var api = new ApiClient(rig.CurrentSocket, UpgradeRig.Wait))
        {
            var (status, body) = await api.SendAsync("POST", "/api/v1/block/exports",
                System.Text.Json.JsonSerializer.Serialize(new { name = "root", mountpoint = "/", nbd_socket = socket }));
            Assert.True(status == 200, body);
        }
        Assert.Equal(expected, BlockServiceTests.Copy(dir, $"nbd+unix:///root?socket={socket}"));

        // SIGKILL leaves the socket file behind; the restarted daemon replaces it (nobody answers on it).
        await rig.KillAndFailOverAsync();
        using (var api = new ApiClient(rig.CurrentSocket, UpgradeRig.Wait))
            Assert.Equal(["root"], (await BlockServiceTests.WaitServingAsync(api)).Select(e => e.Name));
        Assert.Equal(expected, BlockServiceTests.Copy(dir, $"nbd+unix:///root?socket={socket}"));
    }
}
