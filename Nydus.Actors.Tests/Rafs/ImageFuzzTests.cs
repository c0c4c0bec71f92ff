using System.Buffers.Binary;
using System.Diagnostics;
using Nydus.Actors.Rafs;
using Nydus.Actors.Rafs.Metadata;
using Nydus.Actors.Storage;
using Nydus.Actors.Storage.Backends;
using Nydus.Actors.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace Nydus.Actors.Tests.Rafs;

/// <summary>
/// Mutates real images (upstream fixtures and fresh mkfs.erofs images) thousands of times and checks that
/// opening either fails with RafsException or a full walk + read succeeds with only RafsException /
/// StorageException escaping: never IndexOutOfRange, NullReference, OutOfMemory, overflow or a hang.
/// </summary>
public sealed class ImageFuzzTests
{
    // At least MinimumCases mutations whatever the machine's load (seeds 0..N are the same on every run), then more
    // until the budget is spent: a loaded machine runs fewer extra cases, never fewer than the minimum.
    private const int MinimumCases = 1000;
    private static readonly TimeSpan Budget = TimeSpan.FromSeconds(25);
    private readonly ITestOutputHelper _output;

    public ImageFuzzTests(ITestOutputHelper output)
    {
        _output = output;
    }

    [Fact]
    public async Task Mutated_images_fail_only_with_rafs_or_storage_exceptions()
    {
        using var tree = new TreeBuilder();
        File.WriteAllText(tree.P("dir/file"), new string('f', 10000));
        File.WriteAllBytes(tree.P("dir/big"), new byte[200_000]);
        File.CreateSymbolicLink(tree.P("dir/link"), "file");
        File.WriteAllText(tree.P("xattr"), "x");
        for (int i = 0; i < 200; i++)
        {
            File.WriteAllText(tree.P($"many/entry{i}"), i.ToString());
        }

        string inline = Path.Combine(tree.WorkDir, "inline.erofs");
        string chunked = Path.Combine(tree.WorkDir, "chunked.erofs");
        string device = Path.Combine(tree.WorkDir, "chunked.blob");
        TreeBuilder.Run("mkfs.erofs", "--quiet", inline, tree.Root);
        TreeBuilder.Run("mkfs.erofs", "--quiet", "--chunksize=4096", "--blobdev=" + device, chunked, tree.Root);

        using var repeatable = LocalFsBackend.ForDirectory(ImageFixtures.UpstreamFile("repeatable", "blobs"));
        using var v6Blobs = LocalFsBackend.ForDirectory(ImageFixtures.UpstreamFile("blobs"));
        var seeds = new (string Name, byte[] Bytes, Func<BlobSource> Blobs, bool Erofs)[]
        {
            ("v5-sha256", File.ReadAllBytes(ImageFixtures.UpstreamFile("repeatable", "sha256-nocompress-repeatable")),
                () => new BlobSource(repeatable), false),
            ("v5-lz4", File.ReadAllBytes(ImageFixtures.UpstreamFile("history", "2378d074", "repeatable", "blake3-lz4_block-non_repeatable")),
                () => new BlobSource(repeatable), false),
            ("v6", File.ReadAllBytes(ImageFixtures.UpstreamFile("bootstrap", "rafs-v6-2.2.boot")), () => new BlobSource(v6Blobs), true),
            ("erofs-inline", File.ReadAllBytes(inline), () => BlobSource.None, true),
            ("erofs-blobdev", File.ReadAllBytes(chunked), () => BlobSource.FromDevices(device), true),
        };

        var failures = new List<string>();
        int cases = 0;
        int opened = 0;
        var run = Task.Run(() =>
        {
            var stopwatch = Stopwatch.StartNew();
            var buffer = new byte[64 * 1024];
            for (int seed = 0; (seed < MinimumCases || stopwatch.Elapsed < Budget) && failures.Count < 5; seed++)
            {
                var (name, original, blobs, erofs) = seeds[seed % seeds.Length];
                var random = new Random(seed);
                byte[] bytes = Mutate(original, random, erofs);
                cases++;
                try
                {
                    using RafsImage image = RafsImage.Open(bytes, $"fuzz-{name}-{seed}", blobs(),
                        new RafsOpenOptions { ValidateDigests = random.Next(2) == 0 });
                    opened++;
                    int budget = 3000;
                    Walk(image, image.RootInode, 0, ref budget, buffer);
                }
                catch (Exception e) when (e is RafsException or StorageException)
                {
                }
                catch (Exception e)
                {
                    lock (failures)
                    {
                        failures.Add($"{name} seed {seed}: {e}");
                    }
                }
            }
        });

        // A hang, not slowness: the 1,000 cases took 49 s at load ~85 on 2 cores (432 fitted the 25 s budget at load 45).
        await run.Within(Budget + TimeSpan.FromSeconds(240), "fuzz loop hung");
        _output.WriteLine($"{cases} cases, {opened} opened");
        Assert.True(failures.Count == 0, string.Join("\n\n", failures));
        Assert.True(opened > cases / 10, $"only {opened} of {cases} mutated images opened: mutations too destructive");
    }

    private static byte[] Mutate(byte[] original, Random random, bool erofs)
    {
        byte[] bytes = (byte[])original.Clone();
        if (erofs && bytes.Length > 1040)
        {
            bytes[1032] &= 0xFE; // let mutations of block 0 past the superblock checksum
        }

        int mutations = random.Next(1, 5);
        for (int m = 0; m < mutations; m++)
        {
            // Favour metadata: most of it sits in the first 16 KiB of these images.
            int limit = random.Next(4) == 0 ? bytes.Length : Math.Min(bytes.Length, 16384);
            int at = random.Next(Math.Max(1, limit - 8));
            switch (random.Next(6))
            {
                case 0:
                    bytes[at] ^= (byte)(1 << random.Next(8));
                    break;
                case 1:
                    bytes[at] = (byte)random.Next(256);
                    break;
                case 2:
                    BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(at), random.Next(3) switch
                    {
                        0 => 0u,
                        1 => uint.MaxValue,
                        _ => (uint)random.Next(),
                    });
                    break;
                case 3:
                    BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(at), random.Next(2) == 0 ? ulong.MaxValue : (ulong)random.NextInt64());
                    break;
                case 4:
                    BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(at), (ushort)random.Next(65536));
                    break;
                default:
                    if (random.Next(4) == 0)
                    {
                        bytes = bytes.AsSpan(0, random.Next(bytes.Length)).ToArray();
                    }

                    break;
            }
        }

        return bytes;
    }

    private static void Walk(RafsImage image, ulong ino, int depth, ref int budget, byte[] buffer)
    {
        if (depth > 64 || --budget < 0)
        {
            return;
        }

        InodeAttr attr = image.GetAttr(ino);
        image.ListXattrs(ino, buffer);
        image.GetXattr(ino, "user.x"u8, buffer);
        switch (attr.Type)
        {
            case InodeType.Symlink:
                image.ReadLink(ino, buffer);
                return;
            case InodeType.Regular:
                // Sample the file (head, a chunk boundary, the tail) to keep each case cheap.
                image.Read(ino, 0, buffer);
                image.Read(ino, (1 << 20) - 100, buffer.AsSpan(0, 4096));
                image.Read(ino, (long)Math.Min(attr.Size, long.MaxValue / 2) - 100, buffer.AsSpan(0, 4096));
                image.Read(ino, (long)Math.Min(attr.Size, long.MaxValue / 2), buffer);
                return;
            case InodeType.Directory:
                var sink = new ImageTreeWalker.CollectingSink();
                image.ReadDir(ino, 0, ref sink);
                foreach ((byte[] name, ulong child, _) in sink.Entries)
                {
                    image.TryLookup(ino, name, out _);
                    if (!name.AsSpan().SequenceEqual("."u8) && !name.AsSpan().SequenceEqual(".."u8))
                    {
                        Walk(image, child, depth + 1, ref budget, buffer);
                    }
                }

                return;
        }
    }
}
