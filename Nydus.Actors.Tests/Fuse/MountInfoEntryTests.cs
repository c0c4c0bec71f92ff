using Nydus.Actors.Fuse.Session;
using Xunit;

namespace Nydus.Actors.Tests.Fuse;

public class MountInfoEntryTests
{
    [Fact]
    public void Parse_FuseLine_ReadsDeviceMinorAsConnectionId()
    {
        MountInfoEntry? entry = MountInfoEntry.Parse(
            "512 29 0:77 / /tmp/nydus\\040mnt rw,nosuid,nodev,noatime shared:300 - fuse rafs rw,user_id=0,group_id=0,default_permissions");

        Assert.NotNull(entry);
        Assert.Equal("/tmp/nydus mnt", entry.MountPoint);
        Assert.Equal(0u, entry.Major);
        Assert.Equal(77u, entry.Minor);
        Assert.Equal("fuse", entry.FileSystemType);
        Assert.Equal("rafs", entry.Source);
        Assert.True(entry.IsFuse);
    }

    [Fact]
    public void Parse_LineWithoutOptionalFields_StillFindsSeparator()
    {
        MountInfoEntry? entry = MountInfoEntry.Parse("22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw");
        Assert.NotNull(entry);
        Assert.Equal("ext4", entry.FileSystemType);
        Assert.False(entry.IsFuse);
    }

    [Theory]
    [InlineData("")]
    [InlineData("22 1 8:1 / / rw,relatime ext4 /dev/sda1 rw")]
    [InlineData("22 1 x:y / / rw - ext4 /dev/sda1 rw")]
    public void Parse_MalformedLine_ReturnsNull(string line) => Assert.Null(MountInfoEntry.Parse(line));
}
