using Nydus.Actors.Rafs;
using Nydus.Actors.Tests.Support;
using Xunit;

namespace Nydus.Actors.Tests.RafsFuse;

/// <summary>
/// Times before 1970 are negative seconds in EROFS's 64-bit i_mtime. The kernel's EROFS driver shows them as they
/// were; nydusd used to clamp the unsigned field to long.MaxValue (9223372036854775807). A mkfs.erofs image of files
/// with pre-1970 times is mounted by the kernel (the oracle) and by the real nydusd over FUSE, and stat(1) of both
/// must agree with each other and with the source.
/// </summary>
public sealed class PreEpochTimestampTests
{
    // Seconds since the epoch: well before, one second before, and the edge of a 32-bit time_t.
    private static readonly (string Path, string Date, long Seconds)[] Times =
    {
        ("/old-file", "1960-05-01 12:00:00.123456789 UTC", -305121600),
        ("/last-second", "1969-12-31 23:59:59 UTC", -1),
        ("/dir", "1950-01-01 00:00:00 UTC", -631152000),
        ("/dir/y1901", "1901-12-14 00:00:00 UTC", -2147472000),
        ("/link", "1940-07-04 00:00:00 UTC", -930787200),
    };

    [FuseFact]
    public async Task Pre_1970_mtimes_are_served_like_the_kernel_erofs_mount()
    {
        using var dir = new TempDir("pre-epoch");
        string root = dir.Combine("src");
        Directory.CreateDirectory(Path.Combine(root, "dir"));
        File.WriteAllText(Path.Combine(root, "old-file"), "old");
        File.WriteAllText(Path.Combine(root, "last-second"), "edge");
        File.WriteAllText(Path.Combine(root, "dir", "y1901"), "1901");
        File.CreateSymbolicLink(Path.Combine(root, "link"), "old-file");
        foreach ((string path, string date, _) in Times)
        {
            TreeBuilder.Run("touch", "-h", "-d", date, root + path);
        }

        string image = dir.Combine("image.erofs");
        TreeBuilder.Run("mkfs.erofs", "--quiet", image, root);

        // The reader: negative seconds, nanoseconds as stored.
        using (RafsImage reader = RafsImage.Open(image, BlobSource.None))
        {
            Assert.True(reader.TryLookup(reader.RootInode, "old-file"u8, out ulong old));
            Assert.Equal(-305121600L, reader.GetAttr(old).MtimeSeconds);
            Assert.Equal(123456789u, reader.GetAttr(old).MtimeNanoseconds);
        }

        using var kernel = new KernelErofsMount(image, null);
        await using NydusdMount fuse = await NydusdMount.StartWithLocalFsDirAsync(image, dir.Path);
        foreach ((string path, _, long seconds) in Times)
        {
            // %Y: seconds since the epoch, %y: the full time with nanoseconds, both from lstat (no -L).
            string viaKernel = TreeBuilder.Run("stat", "-c", "%Y %y", kernel.MountPoint + path).Trim();
            string viaFuse = TreeBuilder.Run("stat", "-c", "%Y %y", fuse.MountPoint + path).Trim();
            string source = TreeBuilder.Run("stat", "-c", "%Y %y", root + path).Trim();
            Assert.StartsWith(seconds + " ", viaKernel);
            Assert.Equal(source, viaKernel);
            Assert.Equal(viaKernel, viaFuse);
        }

        Assert.False(fuse.Process.HasExited);
    }
}
