using System.Security.Cryptography;
using Nydus.Actors.Tests.Support;

namespace Nydus.Actors.Tests.Upgrade;

/// <summary>
/// A generated source tree, its EROFS image (mkfs.erofs) and the mountpoint it is to be served at, with the content
/// every reader checks against: SHA-256 and size of each file, sorted names of each directory. Shared by the upgrade
/// rig and the node agent rig.
/// </summary>
public sealed class GeneratedTree
{
    public GeneratedTree(string dir)
    {
        MountPoint = Path.Combine(dir, "mnt");
        Source = Path.Combine(dir, "src");
        Image = Path.Combine(dir, "image.erofs");
        Directory.CreateDirectory(MountPoint);
        Build();
    }

    public string MountPoint { get; }
    public string Source { get; }
    public string Image { get; }

    /// <summary>Relative path → SHA-256 of every regular file; relative path → sorted names of every directory.</summary>
    public Dictionary<string, byte[]> FileHashes { get; } = new(StringComparer.Ordinal);
    public Dictionary<string, long> FileSizes { get; } = new(StringComparer.Ordinal);
    public Dictionary<string, string[]> Directories { get; } = new(StringComparer.Ordinal);

    /// <summary>Reads one byte of a non-empty file with its page cache dropped, so the daemon has to answer.</summary>
    public void ReadOneByte()
    {
        var file = FileHashes.Keys.First(f => FileSizes[f] > 0);
        using var handle = File.OpenHandle(MountPoint + file);
        TreeReaders.DropCache(handle);
        RandomAccess.Read(handle, new byte[1], 0);
    }

    private void Build()
    {
        // Sizes around page and readahead boundaries, and one file of several MiB, in three directories.
        long[] sizes = [0, 1, 4095, 4096, 4097, 70_001, 131_072, 300_000, 1_100_000, 3_000_000];
        var random = new Random(6);
        foreach (var dir in new[] { "", "a", "a/b", "c" })
        {
            Directory.CreateDirectory(Path.Combine(Source, dir));
            for (int i = 0; i < 8; i++)
            {
                var relative = Path.Combine(dir, $"f{i}.bin");
                var content = new byte[sizes[(i * 3 + dir.Length) % sizes.Length]];
                random.NextBytes(content);
                File.WriteAllBytes(Path.Combine(Source, relative), content);
                FileHashes["/" + relative] = SHA256.HashData(content);
                FileSizes["/" + relative] = content.Length;
            }
        }

        TreeBuilder.Run("mkfs.erofs", "--quiet", Image, Source);
        foreach (var dir in new[] { "", "a", "a/b", "c" })
        {
            Directories["/" + dir] = Directory.GetFileSystemEntries(Path.Combine(Source, dir))
                .Select(Path.GetFileName).Order(StringComparer.Ordinal).ToArray()!;
        }
    }
}
