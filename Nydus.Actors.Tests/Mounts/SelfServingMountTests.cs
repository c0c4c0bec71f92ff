using Nydus.Actors.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace Nydus.Actors.Tests.Mounts;

/// <summary>
/// A passthrough_fs source that reaches the daemon's own kernel mount would serve itself: each directory read of the
/// inner copy is a read of the same FUSE connection, nested one level deeper, until every FUSE worker waits in one
/// (ApiFuzzTests met it: all four workers in nested OPENDIRs of their own mount, the walk waiting for 24 minutes).
/// Such a source is refused at mount (400 through the API, an error at start on the command line), and a bind mount
/// of the daemon's mount inside a shared directory, which no path check sees, is never crossed into (ELOOP).
/// </summary>
public sealed class SelfServingMountTests(ITestOutputHelper output)
{
    private static readonly TimeSpan WalkLimit = TimeSpan.FromSeconds(60);

    [FuseFact]
    public async Task A_passthrough_source_around_the_daemons_own_mountpoint_is_refused_and_the_daemon_keeps_serving()
    {
        using var dir = new TempDir("selfmnt");
        var share = dir.Combine("share");
        Directory.CreateDirectory(Path.Combine(share, "sub"));
        File.WriteAllText(Path.Combine(share, "sub", "a.txt"), "a");
        File.CreateSymbolicLink(dir.Combine("alias"), dir.Path);
        await using var daemon = await NydusdApiDaemon.StartAsync(dir, "selfmnt-" + Guid.NewGuid().ToString("N")[..8]);

        // The directory holding the mountpoint, the mountpoint itself, a directory under it, a link to the holder, "/".
        string[] around = [dir.Path, daemon.MountPoint, Path.Combine(daemon.MountPoint, "x"), dir.Combine("alias"), "/"];
        foreach (var source in around)
        {
            var (status, body) = await daemon.MountAsync("/p", source, "", fsType: "passthrough_fs");
            output.WriteLine($"{source}: {status} {body}");
            Assert.Equal(400, status);
            Assert.Contains("own mountpoint", body);
        }
        Assert.Empty(await daemon.BackendMountpointsAsync());

        // A directory beside the mountpoint is served.
        Assert.Equal(204, (await daemon.MountAsync("/p", share, "", fsType: "passthrough_fs")).Status);
        Assert.Equal("a", File.ReadAllText(Path.Combine(daemon.MountPoint, "p", "sub", "a.txt")));
    }

    [FuseFact]
    public async Task A_bind_mount_of_the_daemons_mount_inside_a_shared_directory_is_not_crossed()
    {
        using var dir = new TempDir("selfbind");
        var share = dir.Combine("share");
        Directory.CreateDirectory(Path.Combine(share, "sub"));
        Directory.CreateDirectory(Path.Combine(share, "loop"));
        File.WriteAllText(Path.Combine(share, "sub", "a.txt"), "a");
        await using var daemon = await NydusdApiDaemon.StartAsync(dir, "selfbind-" + Guid.NewGuid().ToString("N")[..8]);
        Assert.Equal(204, (await daemon.MountAsync("/p", share, "", fsType: "passthrough_fs")).Status);

        // The alias is made after the mount, so no path check could have seen it.
        var loop = Path.Combine(share, "loop");
        TreeBuilder.Run("mount", "--bind", daemon.MountPoint, loop);
        try
        {
            // Walked on a thread of its own, bounded: without the guard this walk goes round the mount, one FUSE
            // request deeper per level, until every worker waits in one and the walk waits for good.
            var seen = await Task.Run(() => Walk(Path.Combine(daemon.MountPoint, "p"), depthLimit: 8)).WaitAsync(WalkLimit);
            output.WriteLine(string.Join("\n", seen));
            Assert.Contains("p/sub/a.txt", seen);
            Assert.DoesNotContain(seen, path => path.StartsWith("p/loop/", StringComparison.Ordinal));
            // The name itself answers ELOOP rather than leading into the mount.
            var stat = Assert.Throws<InvalidOperationException>(() => TreeBuilder.Run("stat", Path.Combine(daemon.MountPoint, "p", "loop")));
            Assert.Contains("symbolic links", stat.Message);

            // The daemon still serves, the rest of the share too.
            Assert.Equal("a", File.ReadAllText(Path.Combine(daemon.MountPoint, "p", "sub", "a.txt")));
            Assert.False(daemon.Process.HasExited);
        }
        finally
        {
            // Lazy: a daemon stuck in its own requests must not keep the bind mount (and the test) alive.
            try { TreeBuilder.Run("umount", "-l", loop); } catch (Exception e) { output.WriteLine("umount of the bind mount: " + e.Message); }
        }
    }

    [FuseFact]
    public async Task A_command_line_shared_dir_that_holds_the_mountpoint_fails_the_start()
    {
        using var dir = new TempDir("selfcli");
        var mountpoint = dir.Combine("mnt");
        Directory.CreateDirectory(mountpoint);
        var (code, text) = await NydusdProcess.RunAsync(TimeSpan.FromSeconds(60),
            "--shared-dir", dir.Path, "--mountpoint", mountpoint, "--apisock", dir.Combine("api.sock"), "--id", "selfcli", "--work-dir", dir.Combine("work"));
        output.WriteLine($"exit {code}: {text}");
        Assert.NotEqual(0, code);
        Assert.Contains("own mountpoint", text);
        Assert.False(Nydus.Actors.Fuse.Session.FuseMount.IsMounted(mountpoint), "the failed start left a mount");
    }

    /// <summary>Relative paths of everything under <paramref name="root"/> (prefixed with its name), depth-first, going
    /// no deeper than <paramref name="depthLimit"/> (a deeper path means the walk went round a loop).</summary>
    private static List<string> Walk(string root, int depthLimit)
    {
        var seen = new List<string>();
        var name = Path.GetFileName(root);
        void Visit(string directory, string relative, int depth)
        {
            if (depth > depthLimit) throw new InvalidOperationException($"the walk went {depth} levels deep at {relative}: it goes round a loop");
            foreach (var entry in new DirectoryInfo(directory).EnumerateFileSystemInfos())
            {
                var path = relative + "/" + entry.Name;
                seen.Add(path);
                if (entry is not DirectoryInfo { LinkTarget: null } sub) continue;
                // A plain READDIR lists the guarded name too; opening it fails (ELOOP), which is the guard's answer.
                try { Visit(sub.FullName, path, depth + 1); }
                catch (IOException e) { seen.Add($"{path}: {e.Message}"); }
            }
        }
        Visit(root, name, 0);
        return seen;
    }
}
