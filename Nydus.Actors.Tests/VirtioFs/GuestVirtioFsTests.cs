using Nydus.Actors.Tests.Block;
using Nydus.Actors.Tests.Support;
using Xunit;

namespace Nydus.Actors.Tests.VirtioFs;

/// <summary>
/// Our images in a real VM over virtio-fs: qemu 7.2 (TCG) with vhost-user-fs-pci devices on <c>nydusd virtiofs</c>
/// sockets, Debian 6.1's virtiofs driver mounting them (<c>mount -t virtiofs</c>), and ordinary tools (find, stat,
/// sha256sum, getfattr, md5sum) reading the tree in the guest. One VM boot serves the class (<see cref="GuestVirtioFsFixture"/>).
/// </summary>
public sealed class GuestVirtioFsTests : IClassFixture<GuestVirtioFsFixture>
{
    private readonly GuestVirtioFsFixture _fixture;

    public GuestVirtioFsTests(GuestVirtioFsFixture fixture)
    {
        _fixture = fixture;
    }

    [VmFact]
    public void Chunked_erofs_image_mounted_with_virtiofs_in_the_guest_equals_the_source_tree()
    {
        GuestRun run = _fixture.Run;
        AssertStep(run, "nydus0-mount", "0");
        AssertStep(run, "nydus0-manifest", "0");
        AssertManifestIsTheSourceTree(run, "nydus0", "the guest's virtiofs mount");
        AssertStep(run, "nydus0-umount", "0");
    }

    [VmFact]
    public void Rafs_v6_fixture_mounted_with_virtiofs_in_the_guest_has_the_manifest_files_and_md5s()
    {
        GuestRun run = _fixture.Run;
        AssertStep(run, "nydus1-mount", "0");
        AssertV6FixtureMd5s(run, "nydus1", "");
        string manifest = run.Manifest("nydus1") ?? "";
        Assert.Contains("./lib.rs\tmeta\tf 644 0:0 1 16931 1676819553.6286613340", manifest);
        Assert.Contains("./sync_io.rs\tmeta\tf 644 0:0 1 13400 1676819553.6289930840", manifest);
        AssertStep(run, "nydus1-umount", "0");
    }

    [VmFact]
    public void Rafs_v5_fixture_from_the_registry_mounted_with_virtiofs_in_the_guest_has_upstreams_md5_list()
    {
        GuestRun run = _fixture.Run;
        AssertStep(run, "nydus2-mount", "0");
        AssertStep(run, "nydus2-md5", "0");
        // The md5 lines of upstream's expected result (MANIFEST.md, R), paths made relative as the guest prints them.
        string[] expected = File.ReadLines(ImageFixtures.UpstreamFile("repeatable", "sha256-nocompress-repeatable.result"))
            .Select(l => l.Trim()).Where(l => System.Text.RegularExpressions.Regex.IsMatch(l, "^[0-9a-f]{32}  /"))
            .Select(l => l[..34] + "." + l[34..]).Order(StringComparer.Ordinal).ToArray();
        string[] served = Lines(File.ReadAllText(Path.Combine(ExchangeOf(run), "nydus2.md5"))).Order(StringComparer.Ordinal).ToArray();
        Assert.Equal(23, expected.Length);
        Assert.True(expected.SequenceEqual(served), $"md5sums in the guest:\n{string.Join("\n", served)}\n{Diagnostics(run)}");
        // The data came through the registry backend into the blob cache.
        Assert.True(Directory.EnumerateFiles(_fixture.RegistryCacheDir, GuestVirtioFsFixture.RepeatableBlobId + "*").Any(),
            $"no blob cache file for {GuestVirtioFsFixture.RepeatableBlobId} in {_fixture.RegistryCacheDir}");
        AssertStep(run, "nydus2-umount", "0");
    }

    [VmFact]
    public void Blobfs_chunked_erofs_image_mounted_by_the_guests_own_erofs_equals_the_source_tree()
    {
        GuestRun run = _fixture.Run;
        AssertStep(run, "nydus3-virtiofs", "0");
        AssertStep(run, "nydus3-losetup", "0");
        AssertStep(run, "nydus3-mount", "0");
        AssertStep(run, "nydus3-manifest", "0");
        string files = File.ReadAllText(Path.Combine(ExchangeOf(run), "nydus3.files"));
        Assert.Contains("image.boot", files);
        Assert.Contains("devices", files);
        AssertManifestIsTheSourceTree(run, "nydus3", $"the guest's EROFS mount of the blobfs files ({files.Trim()})");
        AssertStep(run, "nydus3-umount", "0");
        AssertStep(run, "nydus3-virtiofs-umount", "0");
    }

    [VmFact]
    public void Blobfs_rafs_v6_fixture_mounted_by_the_guests_own_erofs_has_the_manifest_md5s()
    {
        GuestRun run = _fixture.Run;
        AssertStep(run, "nydus4-virtiofs", "0");
        AssertStep(run, "nydus4-mount", "0");
        // Its data blob (zstd chunks) reaches the guest decompressed, in EROFS's layout.
        AssertV6FixtureMd5s(run, "nydus4", File.ReadAllText(Path.Combine(ExchangeOf(run), "nydus4.files")));
        AssertStep(run, "nydus4-umount", "0");
    }

    /// <summary>Every entry: names, types, modes, owners, mtimes, nlink (hard links), sizes, symlink targets, rdev, sha256, xattrs.</summary>
    private void AssertManifestIsTheSourceTree(GuestRun run, string tag, string what)
    {
        string[] expected = Lines(run.SourceManifest);
        string[] served = Lines(run.Manifest(tag) ?? "");
        Assert.True(expected.Length > 100, $"the source manifest has only {expected.Length} lines");
        string[] missing = expected.Except(served).Take(10).ToArray();
        string[] extra = served.Except(expected).Take(10).ToArray();
        Assert.True(missing.Length == 0 && extra.Length == 0 && expected.Length == served.Length,
            $"{what} differs from the source tree\nonly in the source:\n{string.Join("\n", missing)}\nonly in the mount:\n{string.Join("\n", extra)}\n{Diagnostics(run)}");
    }

    /// <summary>The fixture's MANIFEST.md (V6): two files and their md5s, as md5sum printed them in the guest.</summary>
    private void AssertV6FixtureMd5s(GuestRun run, string tag, string context)
    {
        AssertStep(run, tag + "-md5", "0");
        string md5 = File.ReadAllText(Path.Combine(ExchangeOf(run), tag + ".md5"));
        Assert.True(md5 == "4709cf8873e419ecedc7d43fdee4a75f  ./lib.rs\n5442bc7dc9dc5f985c7594e23866ae6f  ./sync_io.rs\n",
            $"md5sums in the guest ({tag}): '{md5}'\n{context}\n{Diagnostics(run)}");
    }

    private static string ExchangeOf(GuestRun run) => run.ExchangeDirectory;

    private void AssertStep(GuestRun run, string step, string expected)
    {
        string? actual = run.Result(step);
        Assert.True(actual == expected, $"guest step {step}: expected {expected}, got {actual ?? "(not run)"} (VM exit {run.ExitCode})\n{Diagnostics(run)}");
    }

    private string Diagnostics(GuestRun run) => run.Diagnostics() + "\n" + _fixture.DaemonOutput;

    private static string[] Lines(string text) => text.Split('\n', StringSplitOptions.RemoveEmptyEntries);
}
