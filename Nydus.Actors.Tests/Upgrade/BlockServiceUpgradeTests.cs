using Nydus.Actors.Api;
using Nydus.Actors.Tests.Block;
using Nydus.Actors.Tests.Support;
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
