using Nydus.Actors.Interop;
using Nydus.Actors.Tests.Rafs;
using Nydus.Actors.Tests.Support;
using Xunit;

namespace Nydus.Actors.Tests.RafsFuse;

/// <summary>
/// mkfs.erofs images of the corner-case tree (hard links, long and dangling symlinks, 254-byte names, a 5,000-entry
/// directory, 40 levels, sparse files, chunk-boundary sizes, xattrs, device nodes, fifos, odd modes and owners),
/// served by the real nydusd over FUSE and, as the oracle, mounted by the kernel's EROFS driver. Both mounts are read
/// with lstat/readlink/llistxattr/lgetxattr/read (find, stat and libc), never through the reader API, and must equal
/// the source tree and each other.
/// </summary>
public sealed class GeneratedImageFuseTests : IClassFixture<GeneratedTreeFixture>
{
    private readonly GeneratedTreeFixture _fixture;

    public GeneratedImageFuseTests(GeneratedTreeFixture fixture)
    {
        _fixture = fixture;
    }

    public static TheoryData<string, bool, string[]> Variants() => new()
    {
        { "plain", false, Array.Empty<string>() },
        { "chunk4k-blobdev", true, new[] { "--chunksize=4096" } },
        { "chunk1m-blobdev", true, new[] { "--chunksize=1048576" } },
    };

    [FuseTheory]
    [MemberData(nameof(Variants))]
    public async Task Fuse_mount_equals_source_tree_and_kernel_erofs_mount(string name, bool blobDevice, string[] options)
    {
        (string image, string? blob) = _fixture.MakeImage("fuse-" + name, blobDevice, options);
        using var kernel = new KernelErofsMount(image, blob);
        await using NydusdMount fuse = blob is null
            ? await NydusdMount.StartWithLocalFsDirAsync(image, _fixture.Tree.WorkDir)
            : await NydusdMount.StartWithConfigAsync(image, BlobFileConfig(blob));

        Dictionary<string, TreeEntry> viaFuse = TreeSnapshot.Take(fuse.MountPoint);
        Dictionary<string, TreeEntry> viaKernel = TreeSnapshot.Take(kernel.MountPoint);
        Assert.Equal(_fixture.Expected.Keys.Order(StringComparer.Ordinal), viaFuse.Keys.Order(StringComparer.Ordinal));
        Assert.Equal(viaKernel.Keys.Order(StringComparer.Ordinal), viaFuse.Keys.Order(StringComparer.Ordinal));

        var fuseInodeBySource = new Dictionary<ulong, ulong>();
        var kernelInodeByFuse = new Dictionary<ulong, ulong>();
        int regularFiles = 0;
        foreach (TreeEntry source in _fixture.Expected.Values)
        {
            TreeEntry ours = viaFuse[source.Path];
            TreeEntry oracle = viaKernel[source.Path];
            string where = $"{name}:{source.Path}";
            AssertSameMetadata(source, ours, where + " (fuse vs source)", compareDirectorySize: false);
            AssertSameMetadata(oracle, ours, where + " (fuse vs kernel)", compareDirectorySize: true);

            // Hard links: one FUSE inode per source inode and per kernel inode, in both directions.
            AssertSameGrouping(fuseInodeBySource, source.SourceInode, ours.SourceInode, where);
            AssertSameGrouping(kernelInodeByFuse, ours.SourceInode, oracle.SourceInode, where);

            if (source.Type == 'f')
            {
                regularFiles++;
                byte[] original = File.ReadAllBytes(_fixture.Tree.Root + source.Path);
                Assert.Equal(Errno.Success, MountedFile.TryReadAll(fuse.MountPoint + source.Path, out byte[] served, chunk: 70_001));
                Assert.True(original.AsSpan().SequenceEqual(served), $"{where}: content through FUSE differs from the source");
                Assert.Equal(Errno.Success, MountedFile.TryReadAll(kernel.MountPoint + source.Path, out byte[] fromKernel));
                Assert.True(fromKernel.AsSpan().SequenceEqual(served), $"{where}: content through FUSE differs from the kernel's");
            }
        }

        Assert.True(regularFiles > 5000, $"only {regularFiles} regular files compared");
        Assert.False(fuse.Process.HasExited);
    }

    /// <summary>A `mkfs.erofs --blobdev F` image names no blob: its extra device is localfs `blob_file`.</summary>
    internal static string BlobFileConfig(string blob) =>
        "{\"version\":2,\"backend\":{\"type\":\"localfs\",\"localfs\":{\"blob_file\":" + NydusdMount.Json(blob)
        + "}},\"cache\":{\"type\":\"dummycache\"},\"rafs\":{\"mode\":\"direct\"}}";

    internal static void AssertSameMetadata(TreeEntry expected, TreeEntry actual, string where, bool compareDirectorySize)
    {
        Assert.True(expected.Type == actual.Type, $"{where}: type {actual.Type} != {expected.Type}");
        Assert.True(expected.Mode == actual.Mode, $"{where}: mode {Convert.ToString(actual.Mode, 8)} != {Convert.ToString(expected.Mode, 8)}");
        Assert.True(expected.Uid == actual.Uid && expected.Gid == actual.Gid,
            $"{where}: owner {actual.Uid}:{actual.Gid} != {expected.Uid}:{expected.Gid}");
        Assert.True(expected.NLink == actual.NLink, $"{where}: nlink {actual.NLink} != {expected.NLink}");
        Assert.True(expected.MtimeSeconds == actual.MtimeSeconds && expected.MtimeNanoseconds == actual.MtimeNanoseconds,
            $"{where}: mtime {actual.MtimeSeconds}.{actual.MtimeNanoseconds:D9} != {expected.MtimeSeconds}.{expected.MtimeNanoseconds:D9}");
        Assert.True(expected.LinkTarget == actual.LinkTarget, $"{where}: symlink target differs");
        Assert.True(expected.Rdev == actual.Rdev, $"{where}: rdev {actual.Rdev:x} != {expected.Rdev:x}");
        if (expected.Type != 'd' || compareDirectorySize)
        {
            Assert.True(expected.Size == actual.Size, $"{where}: size {actual.Size} != {expected.Size}");
        }

        Assert.True(expected.Xattrs.Keys.SequenceEqual(actual.Xattrs.Keys),
            $"{where}: xattr names [{string.Join(", ", actual.Xattrs.Keys)}] != [{string.Join(", ", expected.Xattrs.Keys)}]");
        foreach ((string key, byte[] value) in expected.Xattrs)
        {
            Assert.True(value.AsSpan().SequenceEqual(actual.Xattrs[key]), $"{where}: xattr {key} value differs");
        }
    }

    private static void AssertSameGrouping(Dictionary<ulong, ulong> map, ulong from, ulong to, string where)
    {
        if (map.TryGetValue(from, out ulong seen))
        {
            Assert.True(seen == to, $"{where}: a hard link but inode {to}, not {seen}");
        }
        else
        {
            Assert.DoesNotContain(to, map.Values);
            map[from] = to;
        }
    }
}
