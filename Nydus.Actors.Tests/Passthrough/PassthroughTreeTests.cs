using System.Text;
using Nydus.Actors.Interop;
using Nydus.Actors.Tests.Support;
using Xunit;

namespace Nydus.Actors.Tests.Passthrough;

/// <summary>The whole tree seen through the mount against the backing directory, and read-only behaviour.</summary>
public class PassthroughTreeTests
{
    [FuseFact]
    public void WholeTree_ThroughMount_MatchesBackingDirectory()
    {
        using var mount = FuseTestMount.StartPassthrough(writable: true, prepare: BuildTree);

        // Part of the tree is made through the mount, so both directions are covered.
        Directory.CreateDirectory(mount.Mounted("made", "deeper"));
        File.WriteAllBytes(mount.Mounted("made", "deeper", "blob"), PassthroughMountTests.Pattern(300_000, 7));
        File.CreateSymbolicLink(mount.Mounted("made", "to-blob"), "deeper/blob");
        Assert.Equal(Errno.Success, FusePosix.Link(mount.Mounted("made", "deeper", "blob"), mount.Mounted("made", "blob-link")));
        Assert.Equal(Errno.Success, FusePosix.SetXattr(mount.Mounted("made"), "user.origin", "mount"u8.ToArray()));
        File.SetUnixFileMode(mount.Mounted("made", "deeper", "blob"), (UnixFileMode)0x1C0);

        List<string> compared = CompareTrees(mount.Backing, mount.MountPoint);
        Assert.True(compared.Count >= 20, $"only {compared.Count} entries compared");
    }

    [FuseFact]
    public void ReadOnlyMount_RefusesWritesWithErofs()
    {
        using var mount = FuseTestMount.StartPassthrough(writable: false, prepare: BuildTree);

        Assert.Equal("small file", File.ReadAllText(mount.Mounted("small.txt")));
        Assert.Equal(Errno.EROFS, FusePosix.Open(mount.Mounted("small.txt"), Libc.O_WRONLY));
        Assert.Equal(Errno.EROFS, FusePosix.Open(mount.Mounted("new.txt"), Libc.O_WRONLY | Libc.O_CREAT));
        Assert.Equal(Errno.EROFS, FusePosix.Mkdir(mount.Mounted("newdir")));
        Assert.Equal(Errno.EROFS, FusePosix.Unlink(mount.Mounted("small.txt")));
        Assert.Equal(Errno.EROFS, FusePosix.Rename(mount.Mounted("small.txt"), mount.Mounted("moved.txt")));
        Assert.Equal(Errno.EROFS, FusePosix.SetXattr(mount.Mounted("small.txt"), "user.x", [1]));
        Assert.Throws<IOException>(() => File.WriteAllText(mount.Mounted("small.txt"), "overwrite"));
        Assert.Equal("small file", File.ReadAllText(mount.Backed("small.txt")));
    }

    [FuseFact]
    public void ReadOnlyFileSystem_OnWritableMount_RefusesWritesItself()
    {
        // The kernel lets these through (no MS_RDONLY); the passthrough must refuse them with EROFS.
        using var mount = FuseTestMount.StartPassthrough(writable: false, prepare: BuildTree,
            mountOptions: new Nydus.Actors.Fuse.Session.FuseMountOptions { ReadOnly = false, Source = "passthrough" });

        Assert.Equal(Errno.EROFS, FusePosix.Open(mount.Mounted("small.txt"), Libc.O_RDWR));
        Assert.Equal(Errno.EROFS, FusePosix.Open(mount.Mounted("new.txt"), Libc.O_WRONLY | Libc.O_CREAT));
        Assert.Equal(Errno.EROFS, FusePosix.Mkdir(mount.Mounted("newdir")));
        Assert.Equal(Errno.EROFS, FusePosix.Unlink(mount.Mounted("small.txt")));
        Assert.Equal(Errno.EROFS, FusePosix.Chown(mount.Mounted("small.txt"), 1, 1));
        Assert.Equal(Errno.EROFS, FusePosix.SetXattr(mount.Mounted("small.txt"), "user.x", [1]));
        Assert.Equal(Errno.EROFS, FusePosix.Link(mount.Mounted("small.txt"), mount.Mounted("alias")));
        Assert.False(File.Exists(mount.Backed("new.txt")));
        Assert.Equal("small file", File.ReadAllText(mount.Mounted("small.txt")));
    }

    private static void BuildTree(string root)
    {
        File.WriteAllText(Path.Combine(root, "small.txt"), "small file");
        File.WriteAllBytes(Path.Combine(root, "empty"), []);
        File.WriteAllBytes(Path.Combine(root, "large.bin"), PassthroughMountTests.Pattern(3 * 1024 * 1024 + 17, 1));
        Directory.CreateDirectory(Path.Combine(root, "a", "b", "c"));
        File.WriteAllText(Path.Combine(root, "a", "b", "c", "deep.txt"), "deep");
        File.WriteAllText(Path.Combine(root, "a", "one.txt"), "one");
        File.CreateSymbolicLink(Path.Combine(root, "a", "rel-link"), "one.txt");
        File.CreateSymbolicLink(Path.Combine(root, "abs-link"), "/nonexistent/target");
        File.CreateSymbolicLink(Path.Combine(root, "dir-link"), "a/b");
        Assert.Equal(Errno.Success, FusePosix.Link(Path.Combine(root, "a", "one.txt"), Path.Combine(root, "hard-one")));
        Assert.Equal(Errno.Success, FusePosix.SetXattr(Path.Combine(root, "small.txt"), "user.kind", "text"u8.ToArray()));
        Assert.Equal(Errno.Success, FusePosix.SetXattr(Path.Combine(root, "a"), "user.dir", [0, 1, 2, 255]));
        File.SetUnixFileMode(Path.Combine(root, "a", "one.txt"), (UnixFileMode)0x124); // 0444
        File.SetUnixFileMode(Path.Combine(root, "a", "b"), (UnixFileMode)0x1E8); // 0750
        File.SetLastWriteTimeUtc(Path.Combine(root, "empty"), new DateTime(1999, 12, 31, 23, 59, 59, DateTimeKind.Utc));
        Directory.CreateDirectory(Path.Combine(root, "many"));
        for (int i = 0; i < 50; i++)
        {
            File.WriteAllText(Path.Combine(root, "many", $"f{i}"), new string('x', i));
        }

        Directory.CreateDirectory(Path.Combine(root, "name with spaces and ünïcode"));
        File.WriteAllText(Path.Combine(root, "name with spaces and ünïcode", "ok"), "ok");
    }

    /// <summary>Walks <paramref name="expectedRoot"/> and checks every entry against the same path under <paramref name="actualRoot"/>.</summary>
    private static List<string> CompareTrees(string expectedRoot, string actualRoot)
    {
        var compared = new List<string>();
        var pending = new Stack<string>();
        pending.Push("");
        while (pending.Count > 0)
        {
            string relative = pending.Pop();
            string expectedDir = Path.Combine(expectedRoot, relative);
            string actualDir = Path.Combine(actualRoot, relative);
            string[] expectedNames = Directory.GetFileSystemEntries(expectedDir).Select(Path.GetFileName).Order(StringComparer.Ordinal).ToArray()!;
            string[] actualNames = Directory.GetFileSystemEntries(actualDir).Select(Path.GetFileName).Order(StringComparer.Ordinal).ToArray()!;
            Assert.Equal(expectedNames, actualNames);

            foreach (string name in expectedNames)
            {
                string entry = Path.Combine(relative, name);
                string expectedPath = Path.Combine(expectedRoot, entry);
                string actualPath = Path.Combine(actualRoot, entry);
                Assert.Equal(Errno.Success, FusePosix.LStat(expectedPath, out Statx expected));
                Assert.Equal(Errno.Success, FusePosix.LStat(actualPath, out Statx actual));

                string what = $"{entry}: ";
                Assert.True(expected.Mode == actual.Mode, what + $"mode {expected.Mode:x} vs {actual.Mode:x}");
                Assert.True(expected.Size == actual.Size, what + $"size {expected.Size} vs {actual.Size}");
                Assert.True(expected.LinkCount == actual.LinkCount, what + $"nlink {expected.LinkCount} vs {actual.LinkCount}");
                Assert.True(expected.Inode == actual.Inode, what + "inode number");
                Assert.True((expected.Uid, expected.Gid) == (actual.Uid, actual.Gid), what + "owner");
                Assert.True(expected.ModifyTime.Seconds == actual.ModifyTime.Seconds && expected.ModifyTime.Nanoseconds == actual.ModifyTime.Nanoseconds,
                    what + "mtime");
                Assert.Equal(FusePosix.Xattrs(expectedPath), FusePosix.Xattrs(actualPath));

                switch (expected.FileType)
                {
                    case FileModes.S_IFLNK:
                        Assert.Equal(new FileInfo(expectedPath).LinkTarget, new FileInfo(actualPath).LinkTarget);
                        break;
                    case FileModes.S_IFREG:
                        Assert.True(File.ReadAllBytes(expectedPath).AsSpan().SequenceEqual(File.ReadAllBytes(actualPath)), what + "content");
                        break;
                    case FileModes.S_IFDIR:
                        pending.Push(entry);
                        break;
                }

                compared.Add(entry);
            }
        }

        return compared;
    }
}
