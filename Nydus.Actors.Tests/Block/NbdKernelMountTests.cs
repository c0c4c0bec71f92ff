using Nydus.Actors.Block;
using Nydus.Actors.Block.Nbd;
using Nydus.Actors.Interop;
using Nydus.Actors.Tests.Rafs;
using Nydus.Actors.Tests.RafsFuse;
using Nydus.Actors.Tests.Support;
using Xunit;
using Nydus.Actors.Storage.Cache;

namespace Nydus.Actors.Tests.Block;

/// <summary>
/// mkfs.erofs images of the corner-case tree served by our NBD server, exposed as a file by libnbd's nbdfuse,
/// attached read-only to a loop device and mounted by the host kernel's EROFS driver (one device: no -o device=):
/// every entry must equal the source tree (names, types, modes, owners, sizes, nlink, mtimes, symlinks, rdev,
/// xattrs, contents). The chunked --blobdev image is the case upstream refuses (no mapped_blkaddr in its device
/// table): it only mounts because the served device table places the blob.
/// </summary>
public sealed class NbdKernelMountTests : IClassFixture<GeneratedTreeFixture>
{
    private readonly GeneratedTreeFixture _fixture;

    public NbdKernelMountTests(GeneratedTreeFixture fixture)
    {
        _fixture = fixture;
    }

    public static TheoryData<string, bool, string[]> Variants() => new()
    {
        { "plain", false, Array.Empty<string>() },
        { "chunk4k-blobdev", true, new[] { "--chunksize=4096" } },
    };

    [FuseTheory]
    [MemberData(nameof(Variants))]
    public void Kernel_mount_of_the_export_through_nbdfuse_equals_the_source_tree(string name, bool blobDevice, string[] options)
    {
        (string image, string? blob) = _fixture.MakeImage("nbd-" + name, blobDevice, options);
        using var caches = new BlobCacheRegistry();
        BlockAddressSpace space = blob is null
            ? BlockImages.OpenFromCommandLine(image, null, _fixture.Tree.WorkDir)
            : BlockImages.Open(image, Nydus.Actors.Config.NydusConfigLoader.Parse(GeneratedImageFuseTests.BlobFileConfig(blob), "test"), "test", caches);
        if (blob is not null) Assert.Contains(0L, space.PatchedBlocks);

        using var dir = new TempDir("nbd-kmount");
        using var exports = new NbdExportTable();
        Assert.True(exports.TryAdd(new NbdExport(name, "", space)));
        using var server = new NbdServer(exports);
        string socket = dir.Combine("s");
        server.ListenUnix(socket);

        using var file = new NbdFuseFile(dir.Combine("fuse"), $"nbd+unix:///{name}?socket={socket}");
        Assert.Equal(space.Size, new FileInfo(file.FilePath).Length);
        using var kernel = new KernelErofsMount(file.FilePath, blobDevice: null);

        Dictionary<string, TreeEntry> served = TreeSnapshot.Take(kernel.MountPoint);
        Assert.Equal(_fixture.Expected.Keys.Order(StringComparer.Ordinal), served.Keys.Order(StringComparer.Ordinal));
        int regularFiles = 0;
        foreach (TreeEntry source in _fixture.Expected.Values)
        {
            TreeEntry ours = served[source.Path];
            GeneratedImageFuseTests.AssertSameMetadata(source, ours, $"{name}:{source.Path}", compareDirectorySize: false);
            if (source.Type != 'f') continue;
            regularFiles++;
            Assert.Equal(Errno.Success, MountedFile.TryReadAll(kernel.MountPoint + source.Path, out byte[] content));
            Assert.True(File.ReadAllBytes(_fixture.Tree.Root + source.Path).AsSpan().SequenceEqual(content),
                $"{name}:{source.Path}: content differs from the source");
        }

        Assert.True(regularFiles > 5000, $"only {regularFiles} regular files compared");
    }
}
