using System.Text;
using System.Text.Json.Nodes;
using Nydus.Actors.Api;
using Nydus.Actors.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace Nydus.Actors.Tests.Upgrade;

/// <summary>
/// The blob cache manager's entries on a FUSE daemon survive a live upgrade (carried by the handoff state) and a
/// takeover by a successor whose work dir was lost (its journal then catches up once it runs).
/// </summary>
[Collection("upgrade")]
public sealed class BlobEntriesUpgradeTests(ITestOutputHelper output)
{
    private const string BlobA = "be7d77eeb719f70884758d1aa800ed0fb09d701aaec469964e9d54325f0d5fef";

    private static string Entry(string domain, string id, string workDir) => new JsonObject
    {
        ["type"] = "bootstrap",
        ["id"] = id,
        ["domain_id"] = domain,
        ["config_v2"] = new JsonObject
        {
            ["version"] = 2,
            ["backend"] = new JsonObject { ["type"] = "localfs", ["localfs"] = new JsonObject { ["dir"] = ImageFixtures.UpstreamFile("blobs") } },
            ["cache"] = new JsonObject { ["type"] = "blobcache", ["filecache"] = new JsonObject { ["work_dir"] = workDir } },
            ["metadata_path"] = ImageFixtures.UpstreamFile("bootstrap", "rafs-v6-2.2.boot"),
        },
    }.ToJsonString();

    private async Task<string[]> KeysAsync(string socket)
    {
        using var api = new ApiClient(socket, UpgradeRig.Wait);
        var (status, body) = await api.SendAsync("GET", "/api/v2/blobs");
        output.WriteLine($"GET /api/v2/blobs on {socket}: {status} {body}");
        Assert.Equal(200, status);
        return [.. JsonNode.Parse(body)!["blobs"]!.AsArray()
            .Select(i => $"{i!["domain_id"]!.GetValue<string>()}/{i["id"]!.GetValue<string>()}:{i["ref_count"]?.GetValue<int>() ?? 0}")
            .Order(StringComparer.Ordinal)];
    }

    private static async Task PutAsync(string socket, string body)
    {
        using var api = new ApiClient(socket, UpgradeRig.Wait);
        var (status, answer) = await api.SendAsync("PUT", "/api/v2/blobs", body);
        Assert.True(status == 204, $"PUT /api/v2/blobs: {status} {answer}");
    }

    [FuseFact]
    public async Task Blob_entries_survive_live_upgrades_and_a_successor_on_a_lost_work_dir()
    {
        await using var rig = await UpgradeRig.StartAsync();
        var cache = Path.Combine(Path.GetDirectoryName(rig.MountPoint)!, "blob-cache");
        Directory.CreateDirectory(cache);
        await PutAsync(rig.CurrentSocket, Entry("d1", "img1", cache));
        await PutAsync(rig.CurrentSocket, Entry("d1", "img2", cache));
        await PutAsync(rig.CurrentSocket, Entry("d2", "img1", cache));
        string[] expected = [$"d1/{BlobA}:2", "d1/img1:0", "d1/img2:0", $"d2/{BlobA}:1", "d2/img1:0"];
        Assert.Equal(expected, await KeysAsync(rig.CurrentSocket));
        await rig.SendFdAsync();

        await rig.UpgradeAsync();
        Assert.Equal(expected, await KeysAsync(rig.CurrentSocket));

        // A change after the upgrade is the successor's to record; a second upgrade carries it too.
        using (var api = new ApiClient(rig.CurrentSocket, UpgradeRig.Wait))
            Assert.Equal(204, (await api.SendAsync("DELETE", "/api/v2/blobs?domain_id=d1&blob_id=img2")).Status);
        await rig.SendFdAsync();
        await rig.UpgradeAsync();
        string[] afterRemoval = [$"d1/{BlobA}:1", "d1/img1:0", $"d2/{BlobA}:1", "d2/img1:0"];
        Assert.Equal(afterRemoval, await KeysAsync(rig.CurrentSocket));

        // A successor on an empty work dir takes the entries from the handoff, writes them into its own journal once
        // it runs, and a plain restart on that work dir finds them there.
        var emptyWork = Path.Combine(Path.GetDirectoryName(rig.MountPoint)!, "empty-work");
        var socket = rig.NextSocket();
        var args = rig.DaemonArgs(socket).ToList();
        args[args.IndexOf("--work-dir") + 1] = emptyWork;
        await using var next = NydusdProcess.Start([.. args, "--upgrade"]);
        await next.WaitForStateAsync(socket, "INIT", UpgradeRig.Wait);
        using (var api = new ApiClient(socket, UpgradeRig.Wait))
        {
            // Before it runs, the successor must not change what its predecessor still records.
            var (refused, why) = await api.SendAsync("PUT", "/api/v2/blobs", Entry("d3", "img1", cache));
            output.WriteLine($"PUT before takeover: {refused} {why}");
            Assert.Equal(503, refused);
        }
        await rig.TakeoverAsync(socket);
        await next.WaitForStateAsync(socket, "READY", UpgradeRig.Wait);
        Assert.Equal(afterRemoval, await KeysAsync(socket));
        UpgradeRig.Check(await UpgradeRig.PutAsync(rig.CurrentSocket, "/api/v1/daemon/exit"), "exit of the old daemon");
        Assert.Equal(0, await rig.Current.WaitForExitAsync(UpgradeRig.Wait));
        UpgradeRig.Check(await UpgradeRig.PutAsync(socket, "/api/v1/daemon/start"), "start of the successor");
        await next.WaitForStateAsync(socket, "RUNNING", UpgradeRig.Wait);
        var caughtUp = DateTime.UtcNow + UpgradeRig.Wait;
        while (!next.Output.Contains("Blob entries written to the journal now ours: 2 change(s)", StringComparison.Ordinal))
        {
            if (DateTime.UtcNow > caughtUp) throw new TimeoutException($"the successor's journal never got the blob entries:\n{next.Output}");
            await Task.Delay(50);
        }
        next.Signal(NydusdProcess.SIGTERM);
        Assert.Equal(0, await next.WaitForExitAsync(UpgradeRig.Wait));

        var again = rig.NextSocket();
        var restartArgs = rig.DaemonArgs(again).ToList();
        restartArgs[restartArgs.IndexOf("--work-dir") + 1] = emptyWork;
        await using var restarted = NydusdProcess.Start([.. restartArgs]);
        await restarted.WaitForStateAsync(again, "RUNNING", UpgradeRig.Wait);
        Assert.Equal(afterRemoval, await KeysAsync(again));
        restarted.Signal(NydusdProcess.SIGTERM);
        Assert.Equal(0, await restarted.WaitForExitAsync(UpgradeRig.Wait));
    }
}
