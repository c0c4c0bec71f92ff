using Nydus.Actors.Interop;
using Nydus.Actors.Tests.Support;
using Xunit;

namespace Nydus.Actors.Tests.RafsFuse;

/// <summary>An image mount is read-only: every kind of write answers EROFS, and reads keep working afterwards.</summary>
public sealed class ReadOnlyMountTests
{
    [FuseFact]
    public async Task Writes_of_every_kind_answer_EROFS()
    {
        await using NydusdMount mount = await NydusdMount.StartWithLocalFsDirAsync(
            ImageFixtures.UpstreamFile("repeatable", "sha256-nocompress-repeatable"), ImageFixtures.UpstreamFile("repeatable", "blobs"));
        string existing = mount.MountPoint + "/hardlink-test/foo";
        string created = mount.MountPoint + "/hardlink-test/new-file";

        Assert.Equal(Errno.EROFS, FusePosix.Open(existing, Libc.O_WRONLY));
        Assert.Equal(Errno.EROFS, FusePosix.Open(existing, Libc.O_RDWR));
        Assert.Equal(Errno.EROFS, FusePosix.Open(created, Libc.O_WRONLY | Libc.O_CREAT));
        Assert.Equal(Errno.EROFS, FusePosix.Mkdir(mount.MountPoint + "/new-dir"));
        Assert.Equal(Errno.EROFS, FusePosix.Unlink(existing));
        Assert.Equal(Errno.EROFS, FusePosix.Rmdir(mount.MountPoint + "/symlink-test"));
        Assert.Equal(Errno.EROFS, FusePosix.Rename(existing, created));
        Assert.Equal(Errno.EROFS, FusePosix.Link(existing, created));
        Assert.Equal(Errno.EROFS, FusePosix.SetXattr(existing, "user.attempt", "x"u8.ToArray()));
        Assert.Equal(Errno.EROFS, FusePosix.Chown(existing, 1, 1));

        // Nothing changed and the daemon still serves.
        Assert.False(File.Exists(created));
        Assert.Equal(Errno.Success, MountedFile.TryReadAll(existing, out byte[] content));
        Assert.Equal("a292e7c6b19c3566a7bbee6a7da632ab", Convert.ToHexStringLower(System.Security.Cryptography.MD5.HashData(content)));
        Assert.Contains(" ro,", File.ReadLines("/proc/self/mounts").Single(line => line.Split(' ')[1] == mount.MountPoint));
    }
}
