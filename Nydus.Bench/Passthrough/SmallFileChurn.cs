using System.Diagnostics;
using System.Text;

namespace Nydus.Bench.Passthrough;

/// <summary>Time spent in each phase of <see cref="SmallFileChurn"/>.</summary>
public readonly record struct ChurnTimes(TimeSpan Create, TimeSpan Stat, TimeSpan Unlink);

/// <summary>
/// Creates N small files in one directory (open O_CREAT|O_EXCL, write, close), lstat()s each, unlinks each, and
/// times the three phases.
/// </summary>
/// <remarks>
/// Each phase runs in batches, and dentries and inodes are dropped (untimed) before every batch. Two reasons:
/// every lstat and unlink then makes the kernel ask the server (a LOOKUP) instead of answering from its cache,
/// and the FUSE servers, which hold one descriptor per inode the kernel knows, stay under this machine's
/// RLIMIT_NOFILE (20,000, and no CAP_SYS_RESOURCE to raise it).
/// </remarks>
public static class SmallFileChurn
{
    private const int FileSize = 1024;
    private const int BatchSize = 4_000;

    public static ChurnTimes Run(string directory, int count)
    {
        if (Directory.Exists(directory)) Directory.Delete(directory, recursive: true);
        Directory.CreateDirectory(directory);
        try
        {
            // Paths are made before the clock starts so the loop times syscalls, not string formatting.
            var paths = new byte[count][];
            for (var i = 0; i < count; i++) paths[i] = Encoding.UTF8.GetBytes(Path.Combine(directory, $"f{i:D6}") + "\0");
            var content = new byte[FileSize];
            Random.Shared.NextBytes(content);

            var create = TimeBatches(paths, path => BenchSyscalls.CreateFile(path, content));
            var stat = TimeBatches(paths, path => BenchSyscalls.LStat(path));
            var unlink = TimeBatches(paths, path => BenchSyscalls.Unlink(path));
            return new ChurnTimes(create, stat, unlink);
        }
        finally
        {
            // A failed pass must not leave files behind for the next one (it would fail on O_EXCL).
            Directory.Delete(directory, recursive: true);
        }
    }

    private static TimeSpan TimeBatches(byte[][] paths, Action<byte[]> operation)
    {
        var total = TimeSpan.Zero;
        var clock = new Stopwatch();
        for (var start = 0; start < paths.Length; start += BatchSize)
        {
            KernelCaches.DropDentriesAndInodes();
            var end = Math.Min(start + BatchSize, paths.Length);
            clock.Restart();
            for (var i = start; i < end; i++) operation(paths[i]);
            total += clock.Elapsed;
        }
        return total;
    }
}
