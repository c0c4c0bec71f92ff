using Nydus.Actors.Block;
using Nydus.Actors.Block.Verity;
using Nydus.Actors.Interop;
using Nydus.Actors.Rafs;
using Nydus.Actors.Tests.Support;
using Xunit;

namespace Nydus.Actors.Tests.Block;

/// <summary>
/// The block address space of the upstream RAFS v6 fixture: layout, reads at any offset, raw export, dm-verity
/// against cryptsetup's own veritysetup, and the host kernel's EROFS mounting the exported file.
/// </summary>
public sealed class BlockAddressSpaceTests
{
    private static BlockAddressSpace OpenFixture() =>
        BlockImages.OpenFromCommandLine(UpstreamBlockImage.Bootstrap, configFile: null, localfsDir: UpstreamBlockImage.BlobDir);

    [Fact]
    public void Fixture_is_laid_out_as_upstream_does()
    {
        using BlockAddressSpace device = OpenFixture();
        Assert.Equal(UpstreamBlockImage.Blocks, device.BlockCount);
        Assert.Equal(
            [(0L, 5L, BlockExtentKind.Metadata), (5L, 507L, BlockExtentKind.Hole), (512L, 9L, BlockExtentKind.Data)],
            device.Extents.Select(e => (e.StartBlock, e.BlockCount, e.Kind)));
        Assert.Equal(UpstreamBlockImage.BlobId, device.Extents[2].Name);
        Assert.Empty(device.PatchedBlocks);
    }

    [Fact]
    public void Every_read_equals_the_independently_built_device()
    {
        byte[] expected = UpstreamBlockImage.ExpectedDevice;
        using BlockAddressSpace device = OpenFixture();
        var whole = new byte[device.Size];
        device.Read(0, whole);
        Assert.True(expected.AsSpan().SequenceEqual(whole), "the whole device differs from the expected image");

        // Unaligned reads across the extent borders (metadata/hole, hole/blob, inside and across chunks).
        var random = new Random(17);
        long[] starts = [0, 1, 4095, 5 * 4096 - 3, 512 * 4096 - 100, 512 * 4096 + 16930, 512 * 4096 + 20479, device.Size - 1];
        foreach (long start in starts.Concat(Enumerable.Range(0, 200).Select(_ => random.NextInt64(device.Size))))
        {
            int length = (int)Math.Min(device.Size - start, random.Next(1, 70_000));
            var part = new byte[length];
            device.Read(start, part);
            Assert.True(expected.AsSpan((int)start, length).SequenceEqual(part), $"read of {length} bytes at {start} differs");
        }
    }

    [Fact]
    public void Reads_outside_the_device_are_refused()
    {
        using BlockAddressSpace device = OpenFixture();
        Assert.Throws<ArgumentOutOfRangeException>(() => device.Read(device.Size - 4095, new byte[4096]));
        Assert.Throws<ArgumentOutOfRangeException>(() => device.Read(-1, new byte[1]));
        Assert.Throws<ArgumentOutOfRangeException>(() => device.Read(long.MaxValue - 2, new byte[4096]));
    }

    [Fact]
    public void Rafs_v5_is_refused_with_a_reason()
    {
        var e = Assert.Throws<RafsException>(() => BlockImages.OpenFromCommandLine(
            ImageFixtures.UpstreamFile("repeatable", "sha256-nocompress-repeatable"), null, ImageFixtures.UpstreamFile("repeatable", "blobs")));
        Assert.Contains("RAFS v5 cannot be a block device", e.Message);
    }

    [Fact]
    public void A_missing_blob_is_an_error_naming_it()
    {
        using var dir = new TempDir("blk-noblob");
        var e = Assert.ThrowsAny<Exception>(() => BlockImages.OpenFromCommandLine(UpstreamBlockImage.Bootstrap, null, dir.Path));
        Assert.Contains(UpstreamBlockImage.BlobId, e.Message);
    }

    [Fact]
    public void Export_writes_the_device_byte_for_byte()
    {
        using var dir = new TempDir("blk-export");
        using BlockAddressSpace device = OpenFixture();
        BlockExportResult result = BlockExporter.Export(device, dir.Combine("disk.img"), verity: null);
        Assert.Null(result.RootHash);
        byte[] written = File.ReadAllBytes(dir.Combine("disk.img"));
        Assert.True(UpstreamBlockImage.ExpectedDevice.AsSpan().SequenceEqual(written), "the exported image differs from the expected device");
        Assert.Equal([dir.Combine("disk.img")], Directory.GetFiles(dir.Path));
    }

    [Theory]
    [InlineData(true, "e48da609055204e89ae53b655ca2216dd983cf3cb829f34f63a297d106d53e2d")]
    [InlineData(false, "")]
    public void Verity_hash_area_and_root_equal_veritysetup_format(bool superblock, string saltHex)
    {
        using var dir = new TempDir("blk-verity");
        using BlockAddressSpace device = OpenFixture();
        var uuid = Guid.Parse("5b5b3a4c-8a28-4c2b-9f0e-3f1a2b3c4d5e");
        var parameters = new VerityParameters(Convert.FromHexString(saltHex), uuid, superblock);
        string ours = dir.Combine("ours.img");
        BlockExportResult result = BlockExporter.Export(device, ours, parameters);

        // cryptsetup over the same data: the data part of our file, hash area appended by veritysetup itself.
        string theirs = dir.Combine("theirs.img");
        using (var source = File.OpenRead(ours))
        using (var target = File.Create(theirs))
        {
            CopyBytes(source, target, device.Size);
        }

        var args = new List<string>
        {
            "format", "--format=1", "--hash=sha256", "--data-block-size=4096", "--hash-block-size=4096",
            $"--data-blocks={device.BlockCount}", $"--hash-offset={device.Size}", $"--salt={(saltHex.Length == 0 ? "-" : saltHex)}",
        };
        args.AddRange(superblock ? [$"--uuid={uuid}"] : ["--no-superblock"]);
        args.AddRange([theirs, theirs]);
        string output = TreeBuilder.Run("veritysetup", args.ToArray());
        string root = output.Split('\n').Single(l => l.StartsWith("Root hash:", StringComparison.Ordinal)).Split(':')[1].Trim();

        Assert.Equal(root, Convert.ToHexStringLower(result.RootHash!));
        byte[] mine = File.ReadAllBytes(ours), cryptsetup = File.ReadAllBytes(theirs);
        Assert.Equal(cryptsetup.Length, mine.Length);
        Assert.True(cryptsetup.AsSpan().SequenceEqual(mine), "our data + hash area differ from veritysetup format's");

        // veritysetup verify accepts our file, and refuses it once a data byte changes (the check is real).
        string[] verifyArgs = ["verify", ours, ours, root, .. result.VeritySetupArguments.Split(' ')];
        TreeBuilder.Run("veritysetup", verifyArgs);
        using (var handle = File.OpenHandle(ours, FileMode.Open, FileAccess.ReadWrite))
        {
            RandomAccess.Write(handle, new byte[] { 0x5A }, 512 * 4096 + 77);
        }

        Assert.Throws<InvalidOperationException>(() => TreeBuilder.Run("veritysetup", verifyArgs));
    }

    [Fact]
    public void Verity_of_a_single_block_is_its_own_hash()
    {
        var parameters = new VerityParameters([1, 2, 3], Guid.Empty, WithSuperblock: false);
        var tree = new VerityHashTree(parameters, 1);
        var block = new byte[4096];
        block[9] = 9;
        tree.Add(block);
        (byte[] area, byte[] root) = tree.Finish();
        Assert.Empty(area);
        Assert.Equal(System.Security.Cryptography.SHA256.HashData([1, 2, 3, .. block]), root);
        Assert.Equal(0, VerityHashTree.LevelCount(1));
        Assert.Equal(1, VerityHashTree.LevelCount(128));
        Assert.Equal(2, VerityHashTree.LevelCount(129));
    }

    [FuseFact]
    public void Host_kernel_mounts_the_exported_image_without_extra_devices()
    {
        using var dir = new TempDir("blk-kmount");
        using (BlockAddressSpace device = OpenFixture())
        {
            BlockExporter.Export(device, dir.Combine("disk.img"), verity: null);
        }

        using var kernel = new KernelErofsMount(dir.Combine("disk.img"), blobDevice: null);
        Assert.Equal(["lib.rs", "sync_io.rs"], Directory.GetFiles(kernel.MountPoint).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        Assert.Equal(Errno.Success, MountedFile.TryReadAll(Path.Combine(kernel.MountPoint, "lib.rs"), out byte[] lib));
        Assert.Equal(Errno.Success, MountedFile.TryReadAll(Path.Combine(kernel.MountPoint, "sync_io.rs"), out byte[] syncIo));
        Assert.Equal(UpstreamBlockImage.LibRsMd5, UpstreamBlockImage.Md5(lib));
        Assert.Equal(UpstreamBlockImage.SyncIoRsMd5, UpstreamBlockImage.Md5(syncIo));
    }

    private static void CopyBytes(Stream source, Stream target, long count)
    {
        var buffer = new byte[1 << 16];
        while (count > 0)
        {
            int n = source.Read(buffer, 0, (int)Math.Min(buffer.Length, count));
            if (n == 0) throw new EndOfStreamException();
            target.Write(buffer, 0, n);
            count -= n;
        }
    }
}
