using Nydus.Actors.Interop;
using Nydus.Actors.Storage.Cache.Blobs;

namespace Nydus.Actors.Fscache;

/// <summary>
/// Upstream's <c>cull_cache</c> (service/src/fs_cache.rs), behind <c>DELETE /api/v2/blobs?blob_id=B</c>: the blob's
/// cache file in every EROFS volume of the cache dir (<see cref="CachefilesLayout"/>) is asked about with
/// <c>inuse</c> and, when the kernel holds no object on it, deleted with <c>cull</c>. The kernel resolves both names in
/// the writer's working directory, so they are written from a thread of their own that has its own working directory
/// (unshare(CLONE_FS)): the daemon's does not move, unlike upstream, which changes the whole process's.
/// Answers (past upstream, which answers success when nothing matched and one error for the rest): no cache file
/// anywhere is NotFound, a file in use is InUse (the others are culled all the same), a refused command Failed.
/// </summary>
public static class FscacheCull
{
    public static Task<BlobCacheResult> CullAsync(ICachefilesDevice device, string cacheDir, string blobId) =>
        Task.Factory.StartNew(() => Cull(device, cacheDir, blobId), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);

    private static BlobCacheResult Cull(ICachefilesDevice device, string cacheDir, string blobId)
    {
        // LongRunning: a new thread that ends with this call, so its private working directory goes with it.
        if (Libc.Unshare(Libc.CLONE_FS) < 0)
            return BlobCacheResult.Fail(BlobCacheErrorKind.Failed, $"cull of blob {blobId}: unshare(CLONE_FS) failed: {Libc.LastErrno}");
        string root = CachefilesLayout.VolumesRoot(cacheDir);
        List<string> culled = [], busy = [], failed = [];
        if (Directory.Exists(root))
        {
            foreach (string volumeDir in Directory.EnumerateDirectories(root, CachefilesLayout.ErofsVolumePrefix + "*"))
            {
                string volumeKey = Path.GetFileName(volumeDir)[1..];
                var (directory, name) = CachefilesLayout.CookieFile(volumeDir, volumeKey, blobId);
                if (!File.Exists(Path.Combine(directory, name))) continue;
                if (Libc.ChDir(directory) < 0)
                {
                    failed.Add($"{volumeKey}: chdir {directory}: {Libc.LastErrno}");
                    continue;
                }
                var inUse = device.FileCommand("inuse " + name);
                var result = inUse == Errno.Success ? device.FileCommand("cull " + name) : inUse;
                if (result == Errno.Success) culled.Add(volumeKey);
                else if (result == Errno.EBUSY) busy.Add(volumeKey);
                else failed.Add($"{volumeKey}: {(inUse == Errno.Success ? "cull" : "inuse")} answered {result}");
            }
        }

        string done = culled.Count == 0 ? "" : $" (culled from {string.Join(", ", culled)})";
        if (failed.Count > 0)
            return BlobCacheResult.Fail(BlobCacheErrorKind.Failed, $"cull of blob {blobId} failed: {string.Join("; ", failed)}{done}");
        if (busy.Count > 0)
            return BlobCacheResult.Fail(BlobCacheErrorKind.InUse,
                $"blob {blobId} is in use (an object open) in {string.Join(", ", busy)}: not culled there{done}");
        if (culled.Count == 0)
            return BlobCacheResult.Fail(BlobCacheErrorKind.NotFound, $"no cache file of blob {blobId} in any EROFS volume of {cacheDir}");
        return BlobCacheResult.Ok($"culled blob {blobId} from {string.Join(", ", culled)}");
    }
}
