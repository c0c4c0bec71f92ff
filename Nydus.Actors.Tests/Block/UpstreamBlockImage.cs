using System.Security.Cryptography;
using Nydus.Actors.Tests.Support;

namespace Nydus.Actors.Tests.Block;

/// <summary>
/// The upstream RAFS v6 fixture (bootstrap/rafs-v6-2.2.boot over blobs/be7d77ee…) as a flat block device, built
/// here without any of our readers: the bootstrap at block 0, zeros up to the blob's mapped_blkaddr 512, then the
/// blob's uncompressed form, each chunk decompressed by the zstd command-line tool at its uncompressed offset
/// (MANIFEST.md §V6: ci 0 = [0, 4828) → 16931 B at 0, ci 1 = [4828, 7802) → 13400 B at 20480; 36864 B in all).
/// Upstream's own test expects 0x209 = 521 blocks.
/// </summary>
public static class UpstreamBlockImage
{
    public const string BlobId = "be7d77eeb719f70884758d1aa800ed0fb09d701aaec469964e9d54325f0d5fef";
    public const long Blocks = 0x209;
    public const string LibRsMd5 = "4709cf8873e419ecedc7d43fdee4a75f";
    public const string SyncIoRsMd5 = "5442bc7dc9dc5f985c7594e23866ae6f";

    public static string Bootstrap => ImageFixtures.UpstreamFile("bootstrap", "rafs-v6-2.2.boot");

    public static string BlobDir => ImageFixtures.UpstreamFile("blobs");

    private static readonly Lazy<byte[]> Expected = new(Build);

    public static byte[] ExpectedDevice => Expected.Value;

    private static byte[] Build()
    {
        var device = new byte[Blocks * 4096];
        byte[] bootstrap = File.ReadAllBytes(Bootstrap);
        bootstrap.CopyTo(device, 0);
        byte[] blob = File.ReadAllBytes(Path.Combine(BlobDir, BlobId));
        byte[] lib = Unzstd(blob.AsSpan(0, 4828));
        byte[] syncIo = Unzstd(blob.AsSpan(4828, 7802 - 4828));
        if (Md5(lib) != LibRsMd5 || Md5(syncIo) != SyncIoRsMd5)
        {
            throw new InvalidOperationException("the fixture's chunks do not decompress to MANIFEST.md's files");
        }

        lib.CopyTo(device, 512 * 4096);
        syncIo.CopyTo(device, 512 * 4096 + 20480);
        return device;
    }

    public static string Md5(byte[] data) => Convert.ToHexStringLower(MD5.HashData(data));

    private static byte[] Unzstd(ReadOnlySpan<byte> frame)
    {
        using var dir = new TempDir("unzstd");
        string input = dir.Combine("chunk.zst"), output = dir.Combine("chunk");
        File.WriteAllBytes(input, frame.ToArray());
        TreeBuilder.Run("zstd", "-q", "-d", "-o", output, input);
        return File.ReadAllBytes(output);
    }
}
