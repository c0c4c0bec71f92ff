using System.Security.Cryptography;
using Nydus.Actors.Tests.Support;
using Xunit;

namespace Nydus.Actors.Tests.Mounts;

/// <summary>
/// A small source tree with seeded random content, made into a plain EROFS image by mkfs.erofs, plus the checks
/// that a mounted copy equals it (listing and every file's bytes, read through the mount with ordinary file I/O).
/// </summary>
public sealed record SmallImage(string Image, string Source)
{
    /// <summary>A config for a plain EROFS image: its data is in the image itself, so any localfs dir will do.</summary>
    public static string Config(string dir) =>
        "{\"version\":2,\"backend\":{\"type\":\"localfs\",\"localfs\":{\"dir\":" + NydusdMount.Json(dir)
        + "}},\"cache\":{\"type\":\"dummycache\"},\"rafs\":{\"mode\":\"direct\"}}";

    public static SmallImage Make(string dir, string name, int seed, int files = 12)
    {
        var source = Path.Combine(dir, name + "-src");
        var random = new Random(seed);
        for (int i = 0; i < files; i++)
        {
            var sub = Path.Combine(source, i % 3 == 0 ? "" : $"d{i % 3}");
            Directory.CreateDirectory(sub);
            var bytes = new byte[random.Next(1, 200_000)];
            random.NextBytes(bytes);
            File.WriteAllBytes(Path.Combine(sub, $"{name}-f{i}.bin"), bytes);
        }
        var image = Path.Combine(dir, name + ".img");
        TreeBuilder.Run("mkfs.erofs", "--quiet", image, source);
        return new SmallImage(image, source);
    }

    /// <summary>The relative paths of the tree at <paramref name="root"/>, sorted.</summary>
    public static string[] Listing(string root) =>
        [.. Directory.EnumerateFileSystemEntries(root, "*", SearchOption.AllDirectories)
            .Select(p => Path.GetRelativePath(root, p)).Order(StringComparer.Ordinal)];

    /// <summary>Asserts that <paramref name="mounted"/> lists the same entries as the source and every file has the same bytes.</summary>
    public void AssertServedAt(string mounted)
    {
        Assert.Equal(Listing(Source), Listing(mounted));
        foreach (var file in Directory.EnumerateFiles(Source, "*", SearchOption.AllDirectories))
        {
            var relative = Path.GetRelativePath(Source, file);
            Assert.True(File.ReadAllBytes(file).AsSpan().SequenceEqual(File.ReadAllBytes(Path.Combine(mounted, relative))),
                $"{relative} read through {mounted} differs from the source");
        }
    }

    public static string Hash(string file) => Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(file)));
}
