using System.Security.Cryptography;
using System.Text.Json;
using Nydus.Actors.Interop;
using Nydus.Actors.Tests.Support;
using Xunit;

namespace Nydus.Actors.Tests.RafsFuse;

/// <summary>
/// Every upstream bootstrap whose blobs are shipped, served by the real nydusd over FUSE (localfs backend) and read
/// with ordinary tools: `tree -a -J -v` and `find -type f -exec md5sum` must give upstream's recorded `.result`,
/// with digest validation off, on through the legacy `digest_validate` key, and on through v2 `rafs.validate`.
/// </summary>
public sealed class UpstreamFixtureFuseTests
{
    private static readonly string RepeatableBlobs = ImageFixtures.UpstreamFile("repeatable", "blobs");

    public static TheoryData<string, string> RepeatableImages()
    {
        var data = new TheoryData<string, string>();
        foreach (string bootstrap in new[]
                 {
                     "repeatable/sha256-nocompress-repeatable",
                     "repeatable/blake3-lz4_block-non_repeatable",
                     "history/2378d074/repeatable/sha256-nocompress-repeatable",
                     "history/2378d074/repeatable/blake3-lz4_block-non_repeatable",
                 })
        {
            foreach (string backend in new[] { "localfs-dir", "legacy-digest_validate", "v2-rafs.validate" })
            {
                data.Add(bootstrap, backend);
            }
        }

        return data;
    }

    [FuseTheory]
    [MemberData(nameof(RepeatableImages))]
    public async Task Repeatable_image_mounted_by_nydusd_lists_and_reads_as_the_result_file(string bootstrap, string backend)
    {
        string resultFile = ImageFixtures.UpstreamFile("repeatable", "sha256-nocompress-repeatable.result");
        (JsonElement expectedTree, List<string> expectedMd5) = ParseResult(File.ReadAllText(resultFile));

        await using NydusdMount mount = await StartAsync(ImageFixtures.UpstreamFile(bootstrap.Split('/')), RepeatableBlobs, backend);
        if (backend != "localfs-dir")
        {
            Assert.Contains("validat", File.ReadAllText(Path.Combine(mount.Scratch, "config.json")));
        }

        // tree(1) prints the mountpoint as the root's name; upstream stripped it, leaving "".
        string treeJson = TreeBuilder.Run("tree", "-a", "-J", "-v", mount.MountPoint);
        JsonElement actualRoot = JsonDocument.Parse(treeJson).RootElement[0];
        Assert.Equal(mount.MountPoint, actualRoot.GetProperty("name").GetString());
        AssertSameTree(expectedTree, actualRoot, "/", isRoot: true);

        List<string> md5Lines = Md5Lines(mount.MountPoint);
        Assert.Equal(23, md5Lines.Count);
        Assert.Equal(expectedMd5, md5Lines);

        // Read every regular file again in odd-sized reads through read(2): same bytes, no error.
        foreach (string line in md5Lines)
        {
            string path = mount.MountPoint + line[34..];
            Assert.Equal(Errno.Success, MountedFile.TryReadAll(path, out byte[] content, chunk: 70_001));
            Assert.Equal(line[..32], Convert.ToHexStringLower(MD5.HashData(content)));
        }

        Assert.False(mount.Process.HasExited);
    }

    [FuseTheory]
    [InlineData("localfs-dir")]
    [InlineData("legacy-digest_validate")]
    [InlineData("v2-rafs.validate")]
    public async Task Rafs_v6_fixture_mounted_by_nydusd_has_the_manifest_files(string backend)
    {
        await using NydusdMount mount = await StartAsync(
            ImageFixtures.UpstreamFile("bootstrap", "rafs-v6-2.2.boot"), ImageFixtures.UpstreamFile("blobs"), backend);

        Assert.Equal(new[] { "lib.rs", "sync_io.rs" },
            Directory.EnumerateFileSystemEntries(mount.MountPoint).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        Assert.Equal(
            new[]
            {
                "4709cf8873e419ecedc7d43fdee4a75f  /lib.rs",
                "5442bc7dc9dc5f985c7594e23866ae6f  /sync_io.rs",
            },
            Md5Lines(mount.MountPoint));
        Assert.Equal(Errno.Success, FusePosix.LStat(Path.Combine(mount.MountPoint, "lib.rs"), out Statx lib));
        Assert.Equal(16931UL, lib.Size);
        Assert.Equal((ushort)0x81A4, lib.Mode);
        Assert.Equal(1676819553L, lib.ModifyTime.Seconds);
        Assert.Equal(628661334U, lib.ModifyTime.Nanoseconds);
    }

    /// <summary>Starts nydusd on the bootstrap with the blob dir given on the command line or in a config file.</summary>
    internal static Task<NydusdMount> StartAsync(string bootstrap, string blobDir, string backend) => backend switch
    {
        "localfs-dir" => NydusdMount.StartWithLocalFsDirAsync(bootstrap, blobDir),
        "legacy-digest_validate" => NydusdMount.StartWithConfigAsync(bootstrap,
            "{\"device\":{\"backend\":{\"type\":\"localfs\",\"config\":{\"dir\":" + NydusdMount.Json(blobDir)
            + "}}},\"mode\":\"direct\",\"digest_validate\":true}"),
        "v2-rafs.validate" => NydusdMount.StartWithConfigAsync(bootstrap,
            "{\"version\":2,\"backend\":{\"type\":\"localfs\",\"localfs\":{\"dir\":" + NydusdMount.Json(blobDir)
            + "}},\"cache\":{\"type\":\"dummycache\"},\"rafs\":{\"mode\":\"direct\",\"validate\":true}}"),
        _ => throw new ArgumentOutOfRangeException(nameof(backend), backend, null),
    };

    /// <summary>`find MNT -type f -exec md5sum {} +`, mountpoint stripped, sorted as bytes (what the .result holds).</summary>
    internal static List<string> Md5Lines(string mountPoint)
    {
        string output = TreeBuilder.Run("find", mountPoint, "-type", "f", "-exec", "md5sum", "{}", "+");
        var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(line => line.Replace("  " + mountPoint + "/", "  /", StringComparison.Ordinal))
            .ToList();
        lines.Sort(StringComparer.Ordinal);
        return lines;
    }

    private static (JsonElement Tree, List<string> Md5Lines) ParseResult(string text)
    {
        int split = text.IndexOf("\n]", StringComparison.Ordinal) + 2;
        using JsonDocument doc = JsonDocument.Parse(text[..split]);
        var lines = text[split..].Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToList();
        return (doc.RootElement[0].Clone(), lines);
    }

    /// <summary>Names, types, symlink targets and entry order, recursively (the report counts are host-dependent).</summary>
    private static void AssertSameTree(JsonElement expected, JsonElement actual, string path, bool isRoot = false)
    {
        string type = expected.GetProperty("type").GetString()!;
        Assert.True(type == actual.GetProperty("type").GetString(), $"{path}: type {actual.GetProperty("type")} != {type}");
        if (!isRoot)
        {
            Assert.Equal(expected.GetProperty("name").GetString(), actual.GetProperty("name").GetString());
        }

        if (type == "link")
        {
            Assert.True(expected.GetProperty("target").GetString() == actual.GetProperty("target").GetString(),
                $"{path}: target {actual.GetProperty("target")} != {expected.GetProperty("target")}");
        }

        if (type == "directory")
        {
            // tree(1) versions differ in printing an empty directory as "contents":[] or without the key.
            var expectedChildren = Children(expected);
            var actualChildren = Children(actual);
            Assert.True(expectedChildren.Select(c => c.GetProperty("name").GetString()).SequenceEqual(
                    actualChildren.Select(c => c.GetProperty("name").GetString())),
                $"{path}: entries [{string.Join(", ", actualChildren.Select(c => c.GetProperty("name").GetString()))}] != "
                + $"[{string.Join(", ", expectedChildren.Select(c => c.GetProperty("name").GetString()))}]");
            for (int i = 0; i < expectedChildren.Count; i++)
            {
                AssertSameTree(expectedChildren[i], actualChildren[i], path + expectedChildren[i].GetProperty("name").GetString() + "/");
            }
        }
    }

    private static List<JsonElement> Children(JsonElement directory) =>
        directory.TryGetProperty("contents", out JsonElement contents) ? contents.EnumerateArray().ToList() : [];
}
