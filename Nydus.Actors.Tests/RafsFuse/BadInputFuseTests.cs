using Nydus.Actors.Interop;
using Nydus.Actors.Rafs;
using Nydus.Actors.Storage.Backends;
using Nydus.Actors.Tests.Support;
using Xunit;

namespace Nydus.Actors.Tests.RafsFuse;

/// <summary>
/// Bad input through the real nydusd: a broken bootstrap, blob dir or config stops it at start with a message that
/// names the file and the field and leaves no mount behind; broken or missing blob data at read time answers EIO for
/// the files that need it (the log names blob and chunk) while the rest of the mount keeps working.
/// </summary>
public sealed class BadInputFuseTests : IDisposable
{
    private const string BlobId = "7334a2594e133cf8ae364189c2276b090fc490c627bcc3fb1077f0419a538e00";
    private static readonly string GoodBootstrap = ImageFixtures.UpstreamFile("repeatable", "sha256-nocompress-repeatable");
    private static readonly string GoodBlobs = ImageFixtures.UpstreamFile("repeatable", "blobs");

    private readonly TempDir _dir = new("rafs-fuse-bad");

    private string MountPoint => _dir.Combine("mnt");

    public BadInputFuseTests()
    {
        Directory.CreateDirectory(MountPoint);
    }

    public void Dispose()
    {
        NydusdMount.DetachIfMounted(MountPoint);
        _dir.Dispose();
    }

    [FuseFact]
    public async Task Truncated_bootstrap_is_refused_naming_the_file_and_the_superblock()
    {
        string bootstrap = _dir.Combine("truncated.boot");
        File.WriteAllBytes(bootstrap, File.ReadAllBytes(GoodBootstrap)[..100]);

        string output = await AssertRefusedAsync("--bootstrap", bootstrap, "--localfs-dir", GoodBlobs);
        Assert.Contains(bootstrap, output);
        Assert.Contains("superblock", output);
    }

    [FuseFact]
    public async Task Bootstrap_with_a_wrong_magic_is_refused_naming_the_file_and_the_magic()
    {
        string bootstrap = _dir.Combine("magic.boot");
        byte[] bytes = File.ReadAllBytes(GoodBootstrap);
        "XXXX"u8.CopyTo(bytes);
        File.WriteAllBytes(bootstrap, bytes);

        string output = await AssertRefusedAsync("--bootstrap", bootstrap, "--localfs-dir", GoodBlobs);
        Assert.Contains(bootstrap, output);
        Assert.Contains("magic 0x58585858", output);
    }

    [FuseFact]
    public async Task Missing_blob_directory_is_refused_naming_the_directory_and_the_field()
    {
        string missing = _dir.Combine("no-such-blob-dir");

        string output = await AssertRefusedAsync("--bootstrap", GoodBootstrap, "--localfs-dir", missing);
        Assert.Contains(missing, output);
        Assert.Contains("backend.localfs.dir", output);

        string config = _dir.Combine("missing-dir.json");
        File.WriteAllText(config,
            "{\"version\":2,\"backend\":{\"type\":\"localfs\",\"localfs\":{\"dir\":" + NydusdMount.Json(missing)
            + "}},\"cache\":{\"type\":\"dummycache\"},\"rafs\":{\"mode\":\"direct\"}}");
        output = await AssertRefusedAsync("--bootstrap", GoodBootstrap, "--config", config);
        Assert.Contains(missing, output);
        Assert.Contains("backend.localfs.dir", output);
    }

    [FuseFact]
    public async Task Config_that_does_not_parse_is_refused_naming_the_file_and_the_position_or_field()
    {
        string config = _dir.Combine("broken.json");
        File.WriteAllText(config, "{\"version\":2,\"backend\":{\"type\":\"localfs\",\n\"localfs\": {\"dir\": 17");

        string output = await AssertRefusedAsync("--bootstrap", GoodBootstrap, "--config", config);
        Assert.Contains(config, output);
        Assert.Contains("LineNumber: 1", output);

        // Well-formed JSON with a field of the wrong type: the message names the field.
        File.WriteAllText(config, "{\"version\":2,\"backend\":{\"type\":\"localfs\",\"localfs\":{\"dir\":17}},"
            + "\"cache\":{\"type\":\"dummycache\"},\"rafs\":{}}");
        output = await AssertRefusedAsync("--bootstrap", GoodBootstrap, "--config", config);
        Assert.Contains(config, output);
        Assert.Contains("backend.localfs.dir", output);
    }

    [FuseTheory]
    [InlineData("legacy-digest_validate")]
    [InlineData("v2-rafs.validate")]
    public async Task Corrupted_chunk_with_validation_on_fails_that_file_with_EIO_and_the_log_names_blob_and_chunk(string backend)
    {
        string blobs = WriteBlobWithOneCorruptFile(out _);

        await using NydusdMount mount = await UpstreamFixtureFuseTests.StartAsync(GoodBootstrap, blobs, backend);
        Assert.Equal(Errno.EIO, MountedFile.TryReadAll(mount.MountPoint + "/hardlink-test/foo", out _));
        // The same inode through another of its names.
        Assert.Equal(Errno.EIO, MountedFile.TryReadAll(mount.MountPoint + "/normal-file-test/test.sh", out _));
        string log = await WaitForLogAsync(mount, "does not match");
        Assert.Contains($"of blob {BlobId}", log);
        Assert.Matches(@"chunk \d+ of blob", log);

        // Every other file still reads, with upstream's md5s.
        List<string> expected = File.ReadAllLines(ImageFixtures.UpstreamFile("repeatable", "sha256-nocompress-repeatable.result"))
            .Where(line => line.Length > 34 && line[32] == ' ' && !line.Contains("test.sh") && !line.EndsWith("/foo", StringComparison.Ordinal))
            .ToList();
        Assert.Equal(20, expected.Count);
        foreach (string line in expected)
        {
            Assert.Equal(Errno.Success, MountedFile.TryReadAll(mount.MountPoint + line[34..], out byte[] content));
            Assert.Equal(line[..32], Convert.ToHexStringLower(System.Security.Cryptography.MD5.HashData(content)));
        }

        Assert.False(mount.Process.HasExited);
    }

    [FuseFact]
    public async Task Corrupted_chunk_with_validation_off_reads_the_damaged_bytes()
    {
        // The contrast that shows validation, not chance, produced the EIO above.
        string blobs = WriteBlobWithOneCorruptFile(out byte[] original);

        await using NydusdMount mount = await NydusdMount.StartWithLocalFsDirAsync(GoodBootstrap, blobs);
        Assert.Equal(Errno.Success, MountedFile.TryReadAll(mount.MountPoint + "/hardlink-test/foo", out byte[] served));
        Assert.Equal(original.Length, served.Length);
        Assert.False(original.AsSpan().SequenceEqual(served), "the corrupted byte was not served");
    }

    /// <summary>
    /// Copies the blob with one byte flipped inside /hardlink-test/foo's data (stored uncompressed, so found by
    /// content) and returns the new blob dir and the file's original content.
    /// </summary>
    private string WriteBlobWithOneCorruptFile(out byte[] original)
    {
        // The file's bytes sit uncompressed in the blob; find them and flip one so only its chunk is damaged.
        using (var backend = LocalFsBackend.ForDirectory(GoodBlobs))
        using (RafsImage image = RafsImage.Open(GoodBootstrap, new BlobSource(backend)))
        {
            Assert.True(image.TryLookup(image.RootInode, "hardlink-test"u8, out ulong dir));
            Assert.True(image.TryLookup(dir, "foo"u8, out ulong foo));
            original = ImageTreeWalker.ReadAll(image, foo);
        }

        string blobs = _dir.Combine("blobs");
        Directory.CreateDirectory(blobs);
        byte[] blob = File.ReadAllBytes(Path.Combine(GoodBlobs, BlobId));
        int at = blob.AsSpan().IndexOf(original);
        Assert.True(at >= 0, "the file's bytes are not stored as-is in the blob");
        Assert.Equal(-1, blob.AsSpan(at + 1).IndexOf(original));
        blob[at + original.Length / 2] ^= 0x20;
        File.WriteAllBytes(Path.Combine(blobs, BlobId), blob);
        return blobs;
    }

    [FuseFact]
    public async Task Missing_blob_file_fails_reads_with_EIO_while_metadata_keeps_working()
    {
        // The blob dir exists but the one blob of the image is not in it.
        string blobs = _dir.Combine("empty-blobs");
        Directory.CreateDirectory(blobs);
        await using NydusdMount mount = await NydusdMount.StartWithLocalFsDirAsync(GoodBootstrap, blobs);

        Assert.Equal(Errno.EIO, MountedFile.TryReadAll(mount.MountPoint + "/hardlink-test/foo", out _));
        Assert.Equal(Errno.EIO, MountedFile.TryReadAll(mount.MountPoint + "/normal-file-test/holefiles/head-hole-1", out _));
        string log = await WaitForLogAsync(mount, BlobId);
        Assert.Contains(blobs, log);

        // Listing, lstat and readlink need only the bootstrap.
        Assert.Equal(new[] { "hardlink-test", "normal-file-test", "symlink-test" },
            Directory.EnumerateFileSystemEntries(mount.MountPoint).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        Assert.Equal(Errno.Success, FusePosix.LStat(mount.MountPoint + "/normal-file-test/holefiles/head-hole-1", out Statx stat));
        Assert.Equal(2097159UL, stat.Size);
        Assert.Equal("../normal-file-test/test.sh", new FileInfo(mount.MountPoint + "/symlink-test/test.sh").LinkTarget);
        Assert.False(mount.Process.HasExited);
    }

    /// <summary>Runs nydusd expecting it to refuse: non-zero exit, and nothing left mounted at the mountpoint.</summary>
    private async Task<string> AssertRefusedAsync(params string[] args)
    {
        string socket = _dir.Combine($"api-{Guid.NewGuid():N}.sock");
        (int code, string output) = await NydusdMount.RunExpectingFailureAsync(MountPoint,
            ["--apisock", socket, "--work-dir", _dir.Combine("work"), .. args]);
        Assert.True(code != 0, $"nydusd exited 0:\n{output}");
        Assert.Contains("cannot start", output);
        Assert.False(NydusdMount.IsListedInMounts(MountPoint), "nydusd left its mount behind");
        return output;
    }

    /// <summary>Log lines arrive asynchronously after the failing read; wait (bounded) for the one we expect.</summary>
    private static async Task<string> WaitForLogAsync(NydusdMount mount, string text)
    {
        DateTime deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (!mount.Process.Output.Contains(text, StringComparison.Ordinal))
        {
            Assert.True(DateTime.UtcNow < deadline, $"the daemon log never mentioned '{text}':\n{mount.Process.Output}");
            await Task.Delay(50);
        }

        return mount.Process.Output;
    }
}
