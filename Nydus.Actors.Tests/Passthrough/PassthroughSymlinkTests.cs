using Nydus.Actors.Tests.Support;
using Xunit;

namespace Nydus.Actors.Tests.Passthrough;

/// <summary>
/// A symlink's own attributes through a writable passthrough mount, set and read with the ordinary tools
/// (setfattr/getfattr -h, touch -h: utimensat with AT_SYMLINK_NOFOLLOW, as pjdfstest utimensat/05.t does) and
/// compared with the backing directory, the oracle. The link's target must never be touched.
/// </summary>
public class PassthroughSymlinkTests
{
    [FuseFact]
    public void Trusted_xattr_of_a_symlink_is_listed_read_set_and_removed_on_the_link_itself()
    {
        using var mount = FuseTestMount.StartPassthrough(writable: true);
        File.WriteAllText(mount.Backed("target"), "t");
        File.CreateSymbolicLink(mount.Backed("link"), "target");
        File.CreateSymbolicLink(mount.Backed("dangling"), "nowhere");
        TreeBuilder.Run("setfattr", "-h", "-n", "trusted.made", "-v", "on-host", mount.Backed("link"));

        // Made on the host, seen through the mount.
        Assert.Equal("on-host", GetAttr(mount.Mounted("link"), "trusted.made"));
        Assert.Contains("trusted.made", TreeBuilder.Run("getfattr", "-h", "-d", "-m", "-", mount.Mounted("link")));

        // Made through the mount, seen on the host, on the link and not on its target (or a missing target).
        TreeBuilder.Run("setfattr", "-h", "-n", "trusted.set", "-v", "via-fuse", mount.Mounted("link"));
        TreeBuilder.Run("setfattr", "-h", "-n", "trusted.set", "-v", "dangling", mount.Mounted("dangling"));
        Assert.Equal("via-fuse", GetAttr(mount.Backed("link"), "trusted.set"));
        Assert.Equal("dangling", GetAttr(mount.Backed("dangling"), "trusted.set"));
        Assert.DoesNotContain("trusted", TreeBuilder.Run("getfattr", "-d", "-m", "-", mount.Backed("target")));

        TreeBuilder.Run("setfattr", "-h", "-x", "trusted.set", mount.Mounted("link"));
        Assert.DoesNotContain("trusted.set", TreeBuilder.Run("getfattr", "-h", "-d", "-m", "-", mount.Backed("link")));

        // user.* is not allowed on symlinks by Linux: the mount answers what the host answers.
        Assert.Contains("Operation not permitted", SetAttrFailure(mount.Backed("link")));
        Assert.Contains("Operation not permitted", SetAttrFailure(mount.Mounted("link")));
    }

    [FuseFact]
    public void Times_of_a_symlink_are_set_on_the_link_itself()
    {
        using var mount = FuseTestMount.StartPassthrough(writable: true);
        File.WriteAllText(mount.Backed("target"), "t");
        File.CreateSymbolicLink(mount.Backed("link"), "target");
        File.CreateSymbolicLink(mount.Backed("dangling"), "nowhere");
        TreeBuilder.Run("touch", "-d", "2001-01-01 00:00:00 UTC", mount.Backed("target"));
        string targetBefore = Stat(mount.Backed("target"));

        // Both times, then mtime alone, then atime alone, then "now": each lands on the link.
        TreeBuilder.Run("touch", "-h", "-d", "1999-09-09 09:09:09.123456789 UTC", mount.Mounted("link"));
        Assert.Equal("936868149.123456789 936868149.123456789", Times(mount.Backed("link")));
        TreeBuilder.Run("touch", "-h", "-m", "-d", "1980-01-02 03:04:05 UTC", mount.Mounted("link"));
        Assert.Equal("936868149.123456789 315630245.000000000", Times(mount.Backed("link")));
        TreeBuilder.Run("touch", "-h", "-a", "-d", "1970-01-02 00:00:00 UTC", mount.Mounted("link"));
        Assert.Equal("86400.000000000 315630245.000000000", Times(mount.Backed("link")));
        Assert.Equal(Times(mount.Backed("link")), Times(mount.Mounted("link")));

        TreeBuilder.Run("touch", "-h", "-d", "2010-10-10 10:10:10 UTC", mount.Mounted("dangling"));
        Assert.Equal("1286705410.000000000 1286705410.000000000", Times(mount.Backed("dangling")));
        TreeBuilder.Run("touch", "-h", mount.Mounted("dangling"));
        Assert.NotEqual("1286705410.000000000 1286705410.000000000", Times(mount.Backed("dangling")));

        Assert.Equal(targetBefore, Stat(mount.Backed("target")));
    }

    private static string GetAttr(string path, string name) =>
        TreeBuilder.Run("getfattr", "-h", "--only-values", "-n", name, path);

    private static string SetAttrFailure(string path)
    {
        InvalidOperationException e = Assert.Throws<InvalidOperationException>(
            () => TreeBuilder.Run("setfattr", "-h", "-n", "user.nope", "-v", "x", path));
        return e.Message;
    }

    /// <summary>lstat atime and mtime with nanoseconds.</summary>
    private static string Times(string path)
    {
        string[] parts = TreeBuilder.Run("stat", "-c", "%.9X %.9Y", path).Trim().Split(' ');
        return string.Join(' ', parts);
    }

    private static string Stat(string path) => TreeBuilder.Run("stat", "-c", "%.9X %.9Y %s", path).Trim();
}
