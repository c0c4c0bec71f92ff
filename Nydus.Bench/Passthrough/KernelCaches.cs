namespace Nydus.Bench.Passthrough;

/// <summary>Drops the kernel's caches through /proc/sys/vm/drop_caches (root only).</summary>
public static class KernelCaches
{
    /// <summary>Cold start from disk: write dirty pages back, then drop page cache, dentries and inodes.</summary>
    public static void DropAll()
    {
        BenchSyscalls.Sync();
        File.WriteAllText("/proc/sys/vm/drop_caches", "3");
    }

    /// <summary>
    /// Drops dentries and inodes only. On a FUSE mount this makes the kernel FORGET its inodes, so the server
    /// closes the descriptor it keeps per inode, and the next access of a name is a fresh LOOKUP.
    /// </summary>
    public static void DropDentriesAndInodes() => File.WriteAllText("/proc/sys/vm/drop_caches", "2");
}
