using System.Diagnostics;
using Xunit;

namespace Nydus.Actors.Tests.Support;

/// <summary>
/// nydus-snapshotter's <c>pkg/cache.Manager</c> (commit a7a1f07): the paths it measures for a blob's usage
/// (<c>fs.DiskUsage</c>: 512-byte blocks of each existing file) and deletes at GC, and how it derives a blob id
/// from a file name in the cache dir.
/// </summary>
public static class SnapshotterCacheManager
{
    private const string ImageDisk = ".image.disk", LayerDisk = ".layer.disk", ChunkMap = ".chunk_map",
        Meta = ".blob.meta", Data = ".blob.data";

    private static string[] Paths(string cacheDir, string blobId) =>
    [
        Path.Combine(cacheDir, blobId),
        Path.Combine(cacheDir, blobId + ChunkMap),
        Path.Combine(cacheDir, blobId + Data),
        Path.Combine(cacheDir, blobId + Data + ChunkMap),
        Path.Combine(cacheDir, blobId + Meta),
        Path.Combine(cacheDir, blobId + ImageDisk),
        Path.Combine(cacheDir, blobId + LayerDisk),
    ];

    public static long CacheUsage(string cacheDir, string blobId) =>
        Paths(cacheDir, blobId).Where(File.Exists).Sum(ContainerdDiskUsage.Of);

    public static void RemoveBlobCache(string cacheDir, string blobId)
    {
        foreach (string path in Paths(cacheDir, blobId))
        {
            File.Delete(path);
        }
    }

    public static string ExtractBlobIdFromFilename(string name)
    {
        foreach (string suffix in new[] { Data, Data + ChunkMap, ChunkMap, Meta, ImageDisk, LayerDisk })
        {
            if (name.EndsWith(suffix, StringComparison.Ordinal))
            {
                return name[..^suffix.Length];
            }
        }

        return name;
    }
}

/// <summary>containerd's <c>fs.DiskUsage</c> of one file: st_blocks × 512.</summary>
public static class ContainerdDiskUsage
{
    public static long Of(string path)
    {
        var info = new ProcessStartInfo("stat", ["--format=%b", path]) { RedirectStandardOutput = true };
        using var process = Process.Start(info)!;
        string output = process.StandardOutput.ReadToEnd();
        Assert.True(process.WaitForExit(10_000), "stat did not finish");
        return long.Parse(output.Trim()) * 512;
    }
}
