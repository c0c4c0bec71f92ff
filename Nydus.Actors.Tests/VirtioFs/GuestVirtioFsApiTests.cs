using Nydus.Actors.Tests.Block;
using Nydus.Actors.Tests.RafsFuse;
using Nydus.Actors.Tests.Support;
using Xunit;

namespace Nydus.Actors.Tests.VirtioFs;

/// <summary>
/// The mount API of a virtio-fs daemon seen from a real guest: <c>nydusd virtiofs --apisock</c> starts with an empty
/// root, the corner-case tree (a chunked mkfs.erofs image) is mounted through <c>POST /api/v1/mount?mountpoint=/img</c>,
/// and the test VM (qemu 7.2 TCG, Debian 6.1's virtiofs) mounts the device and compares <c>/img</c> with the source
/// tree, entry for entry. While the guest runs, the host unmounts <c>/img</c> and mounts the RAFS v6 fixture at
/// <c>/late</c> through the API; the guest then finds <c>img</c> gone and reads <c>/late</c>.
/// </summary>
public sealed class GuestVirtioFsApiTests
{
    private static readonly TimeSpan VmTimeout = TimeSpan.FromMinutes(6);

    [VmFact]
    public async Task An_image_mounted_through_the_api_equals_the_source_tree_in_the_guest_and_api_changes_reach_the_running_guest()
    {
        using var tree = new TreeBuilder().BuildRich(hugeDirectory: false);
        string work = tree.WorkDir;
        string image = Path.Combine(work, "chunked.erofs"), blob = Path.Combine(work, "chunked.blob");
        TreeBuilder.Run("mkfs.erofs", "--quiet", "--chunksize=4096", "--blobdev=" + blob, image, tree.Root);
        await using var daemon = await VirtioFsDaemon.StartAsync(withApi: true);
        var mounted = await daemon.MountAsync("/img", image, GeneratedImageFuseTests.BlobFileConfig(blob));
        Assert.True(mounted.Status == 204, $"mount answered {mounted.Status}: {mounted.Body}");

        string exchange = Directory.CreateDirectory(Path.Combine(work, "out")).FullName;
        string changed = Path.Combine(exchange, "api-changed");
        string guestScript = Path.Combine(work, "guest.sh");
        File.WriteAllText(guestScript, $$"""
            set -u
            OUT='{{exchange}}'
            result() { echo "$1 $2" >> "$OUT/results"; echo "guest: $1 -> $2"; }
            : > "$OUT/results"
            mkdir -p /run/mnt
            mount -t virtiofs nydus0 /run/mnt 2> "$OUT/guest.log"; result mount $?
            ls -A /run/mnt > "$OUT/root.before" 2>> "$OUT/guest.log"
            '{{Path.Combine(TestVm.ScriptsDirectory, "tree-manifest.sh")}}' /run/mnt/img > "$OUT/img.manifest" 2>> "$OUT/guest.log"; result manifest $?
            echo "NYDUS-GUEST-API-CHANGE"
            for _ in $(seq 1 600); do [ -e "$OUT/api-changed" ] && break; sleep 0.25; done
            [ -e "$OUT/api-changed" ]; result host-changed $?
            # The root's pseudo entries are cached by the guest for a second (virtio-fs carries no invalidations).
            sleep 3
            ls -A /run/mnt > "$OUT/root.after" 2>> "$OUT/guest.log"
            [ ! -e /run/mnt/img ]; result img-gone $?
            (cd /run/mnt/late && md5sum lib.rs sync_io.rs) > "$OUT/late.md5" 2>> "$OUT/guest.log"; result late-md5 $?
            umount /run/mnt; result umount $?
            exit 0

            """);
        (int exit, string console) = TestVm.Run(guestScript, exchange, VmTimeout,
            new Dictionary<string, string> { ["NYDUS_VM_VHOST_USER_FS"] = daemon.Socket },
            onConsoleLine: line =>
            {
                if (!line.Contains("NYDUS-GUEST-API-CHANGE", StringComparison.Ordinal) || File.Exists(changed)) return;
                // The host acts while the guest waits: /img goes, the v6 fixture comes at /late.
                var umounted = daemon.UmountAsync("/img").GetAwaiter().GetResult();
                var late = daemon.MountV6FixtureAsync("/late").GetAwaiter().GetResult();
                File.WriteAllText(changed, $"umount {umounted.Status} {umounted.Body}\nmount {late.Status} {late.Body}\n");
            });

        string Read(string name) => File.Exists(Path.Combine(exchange, name)) ? File.ReadAllText(Path.Combine(exchange, name)) : "(missing)";
        string results = Read("results");
        string diagnostics = $"VM exit {exit}\n{results}\n--- guest.log\n{Read("guest.log")}\n--- api\n{Read("api-changed")}\n"
                             + $"--- console (end)\n{(console.Length > 3000 ? console[^3000..] : console)}\n--- nydusd\n{daemon.Process.Output}";
        Assert.True(exit == 0, $"the guest script did not finish\n{diagnostics}");
        Assert.Contains("mount 0\n", results);
        Assert.Equal("img\n", Read("root.before"));

        // Every entry of the tree: names, types, modes, owners, mtimes, nlink, sizes, symlink targets, rdev, sha256, xattrs.
        string[] expected = Lines(TreeBuilder.Run("bash", Path.Combine(TestVm.ScriptsDirectory, "tree-manifest.sh"), tree.Root));
        string[] served = Lines(Read("img.manifest"));
        Assert.True(expected.Length > 100, $"the source manifest has only {expected.Length} lines");
        Assert.True(results.Contains("manifest 0\n") && expected.SequenceEqual(served),
            $"the guest's /img differs from the source tree\nonly in the source:\n{string.Join("\n", expected.Except(served).Take(10))}\n"
            + $"only in the guest:\n{string.Join("\n", served.Except(expected).Take(10))}\n{diagnostics}");

        // The API's changes while the guest ran.
        Assert.StartsWith("umount 204", Read("api-changed"));
        Assert.Contains("mount 204", Read("api-changed"));
        Assert.Contains("host-changed 0\n", results);
        Assert.Contains("img-gone 0\n", results);
        Assert.Equal("late\n", Read("root.after"));
        Assert.True(Read("late.md5") == "4709cf8873e419ecedc7d43fdee4a75f  lib.rs\n5442bc7dc9dc5f985c7594e23866ae6f  sync_io.rs\n",
            $"md5sums of /late in the guest: '{Read("late.md5")}'\n{diagnostics}");
        Assert.Contains("umount 0\n", results);
        Assert.False(daemon.Process.HasExited, daemon.Process.Output);
    }

    private static string[] Lines(string text) => text.Split('\n', StringSplitOptions.RemoveEmptyEntries);
}
