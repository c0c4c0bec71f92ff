using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Nydus.Actors.Rafs;
using Nydus.Actors.Rafs.Metadata;
using Nydus.Actors.Storage.Backends;
using Nydus.Actors.Tests.Support;
using Xunit;

namespace Nydus.Actors.Tests.Rafs;

/// <summary>Opens every upstream fixture bootstrap and compares the walk with its expected listing.</summary>
public sealed class UpstreamFixtureTests
{
    public static TheoryData<string, bool> RepeatableImages() => new()
    {
        { "repeatable/sha256-nocompress-repeatable", false },
        { "repeatable/sha256-nocompress-repeatable", true },
        { "repeatable/blake3-lz4_block-non_repeatable", false },
        { "repeatable/blake3-lz4_block-non_repeatable", true },
        { "history/2378d074/repeatable/sha256-nocompress-repeatable", true },
        { "history/2378d074/repeatable/blake3-lz4_block-non_repeatable", false },
        { "history/2378d074/repeatable/blake3-lz4_block-non_repeatable", true },
    };

    [Theory]
    [MemberData(nameof(RepeatableImages))]
    public void Repeatable_image_walk_matches_result_file(string bootstrap, bool validate)
    {
        string resultFile = ImageFixtures.UpstreamFile("repeatable", "sha256-nocompress-repeatable.result");
        (JsonElement expectedTree, List<string> expectedMd5) = ParseResult(File.ReadAllText(resultFile));

        using var backend = LocalFsBackend.ForDirectory(ImageFixtures.UpstreamFile("repeatable", "blobs"));
        using RafsImage image = RafsImage.Open(ImageFixtures.UpstreamFile(bootstrap.Split('/')), new BlobSource(backend),
            new RafsOpenOptions { ValidateDigests = validate, DefaultUid = 4242, DefaultGid = 4343 });
        Assert.Equal(RafsFormat.RafsV5, image.Format);

        ImageTreeNode root = ImageTreeWalker.Walk(image);
        AssertTreeEquals(expectedTree, root);

        var md5Lines = new List<string>();
        foreach (ImageTreeNode node in ImageTreeWalker.Flatten(root))
        {
            if (node.Attr.Type == InodeType.Regular)
            {
                byte[] content = ImageTreeWalker.ReadAll(image, node.Ino, step: 100_000);
                md5Lines.Add($"{Convert.ToHexStringLower(MD5.HashData(content))}  {node.Path}");
            }
        }

        md5Lines.Sort(StringComparer.Ordinal);
        Assert.Equal(23, md5Lines.Count);
        Assert.Equal(expectedMd5, md5Lines);
    }

    [Fact]
    public void Repeatable_image_has_hardlinks_sharing_ino_and_upstream_attributes()
    {
        using var backend = LocalFsBackend.ForDirectory(ImageFixtures.UpstreamFile("repeatable", "blobs"));
        using RafsImage image = RafsImage.Open(ImageFixtures.UpstreamFile("repeatable", "sha256-nocompress-repeatable"),
            new BlobSource(backend), new RafsOpenOptions { DefaultUid = 4242, DefaultGid = 4343 });
        ImageTreeNode root = ImageTreeWalker.Walk(image);
        var byPath = ImageTreeWalker.Flatten(root).ToDictionary(n => n.Path);

        ImageTreeNode foo = byPath["/hardlink-test/foo"];
        Assert.Equal(5UL, foo.Ino);
        Assert.Equal(3U, foo.Attr.NLink);
        Assert.Equal(5UL, byPath["/hardlink-test/test.sh"].Ino);
        Assert.Equal(5UL, byPath["/normal-file-test/test.sh"].Ino);

        // No EXPLICIT_UID_GID in the current images: the configured daemon ids are reported.
        Assert.Equal(4242U, foo.Attr.Uid);
        Assert.Equal(4343U, foo.Attr.Gid);
        Assert.Equal(1668232305L, foo.Attr.MtimeSeconds);
        Assert.Equal(4096UL, byPath["/hardlink-test"].Attr.Size);
        Assert.Equal(2097159UL, byPath["/normal-file-test/holefiles/head-hole-1"].Attr.Size);
        Assert.Equal(1415680UL,
            byPath["/normal-file-test/busybox/1f777dbdd68d1c4d554bc0d20e027bfef9ed2dfe2d8d5f029e958552a0e12475/layer.tar"].Attr.Size);
        Assert.Equal(Encoding.ASCII.GetBytes("../normal-file-test/test.sh"), byPath["/symlink-test/test.sh"].LinkTarget);
        Assert.Equal(1UL, image.RootInode);
        Assert.True(image.TryLookup(1, ".."u8, out ulong up) && up == 1);
        Assert.False(image.TryLookup(1, "no-such-name"u8, out _));
    }

    [Fact]
    public void History_lz4_image_reports_explicit_uid_gid_1000()
    {
        using var backend = LocalFsBackend.ForDirectory(ImageFixtures.UpstreamFile("repeatable", "blobs"));
        using RafsImage image = RafsImage.Open(
            ImageFixtures.UpstreamFile("history", "2378d074", "repeatable", "blake3-lz4_block-non_repeatable"),
            new BlobSource(backend), new RafsOpenOptions { DefaultUid = 4242, DefaultGid = 4343 });
        foreach (ImageTreeNode node in ImageTreeWalker.Flatten(ImageTreeWalker.Walk(image)))
        {
            Assert.Equal(1000U, node.Attr.Uid);
            Assert.Equal(1000U, node.Attr.Gid);
        }
    }

    [Fact]
    public void Daemon_test_bootstrap_loads_superblock_and_tables()
    {
        using RafsImage image = RafsImage.Open(ImageFixtures.UpstreamFile("bootstrap", "nydusd_daemon_test_bootstrap"),
            BlobSource.None, RafsOpenOptions.Default);
        Assert.Equal(RafsFormat.RafsV5, image.Format);
        Assert.Equal(16816UL, image.InodeCount);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Rafs_v6_fixture_files_match_manifest(bool validate)
    {
        using var backend = LocalFsBackend.ForDirectory(ImageFixtures.UpstreamFile("blobs"));
        using RafsImage image = RafsImage.Open(ImageFixtures.UpstreamFile("bootstrap", "rafs-v6-2.2.boot"),
            new BlobSource(backend), new RafsOpenOptions { ValidateDigests = validate });
        Assert.Equal(RafsFormat.RafsV6, image.Format);
        Assert.Equal(128UL, image.RootInode);

        ImageTreeNode root = ImageTreeWalker.Walk(image);
        Assert.Equal(new[] { "/lib.rs", "/sync_io.rs" }, root.Children.Select(c => c.Path));
        Assert.Equal(0x41EDU, root.Attr.Mode);
        Assert.Equal(67UL, root.Attr.Size);

        ImageTreeNode lib = root.Children[0];
        Assert.Equal(133UL, lib.Ino);
        Assert.Equal(0x81A4U, lib.Attr.Mode);
        Assert.Equal(16931UL, lib.Attr.Size);
        Assert.Equal(1676819553L, lib.Attr.MtimeSeconds);
        Assert.Equal(628661334U, lib.Attr.MtimeNanoseconds);
        Assert.Equal("4709cf8873e419ecedc7d43fdee4a75f", Md5(ImageTreeWalker.ReadAll(image, lib.Ino, step: 3000)));

        ImageTreeNode sync = root.Children[1];
        Assert.Equal(136UL, sync.Ino);
        Assert.Equal(13400UL, sync.Attr.Size);
        Assert.Equal("5442bc7dc9dc5f985c7594e23866ae6f", Md5(ImageTreeWalker.ReadAll(image, sync.Ino)));
    }

    private static string Md5(byte[] content) => Convert.ToHexStringLower(MD5.HashData(content));

    private static (JsonElement Tree, List<string> Md5Lines) ParseResult(string text)
    {
        int split = text.IndexOf("\n]", StringComparison.Ordinal) + 2;
        using JsonDocument doc = JsonDocument.Parse(text.Substring(0, split));
        var lines = text.Substring(split).Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .ToList();
        return (doc.RootElement[0].Clone(), lines);
    }

    private static void AssertTreeEquals(JsonElement expected, ImageTreeNode actual)
    {
        string type = expected.GetProperty("type").GetString()!;
        string expectedName = expected.GetProperty("name").GetString()!;
        string actualName = actual.Path == "/" ? string.Empty : actual.Path[(actual.Path.LastIndexOf('/') + 1)..];
        Assert.Equal(expectedName, actualName);
        switch (type)
        {
            case "directory":
                Assert.Equal(InodeType.Directory, actual.Attr.Type);
                var expectedChildren = expected.GetProperty("contents").EnumerateArray().ToList();
                Assert.True(expectedChildren.Count == actual.Children.Count,
                    $"{actual.Path}: expected {expectedChildren.Count} entries, got {actual.Children.Count}");
                for (int i = 0; i < expectedChildren.Count; i++)
                {
                    AssertTreeEquals(expectedChildren[i], actual.Children[i]);
                }

                break;
            case "link":
                Assert.Equal(InodeType.Symlink, actual.Attr.Type);
                Assert.Equal(expected.GetProperty("target").GetString(), Encoding.UTF8.GetString(actual.LinkTarget!));
                break;
            default:
                Assert.Equal("file", type);
                Assert.Equal(InodeType.Regular, actual.Attr.Type);
                break;
        }
    }
}
