using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Security.Cryptography;

namespace Nydus.Actors.Tests.Upgrade;

/// <summary>
/// Reader threads looping over every file and directory of a mounted tree: stat (size), read (SHA-256 of the whole
/// content) and readdir (sorted names), each checked against the source. Each file's page cache is dropped before it
/// is read (posix_fadvise DONTNEED), so reads reach the daemon instead of the kernel's cache. Counts operations and
/// failures and records the longest single operation (the stall a reader saw).
/// </summary>
public sealed partial class TreeReaders : IDisposable
{
    private const int PosixFadvDontNeed = 4;

    private readonly GeneratedTree _rig;
    private readonly Thread[] _threads;
    // Per reader: Stopwatch timestamp of the operation in progress, 0 between operations.
    private readonly long[] _busySince;
    private readonly List<string> _failures = [];
    private volatile bool _stop;
    private long _operations;
    private long _longestTicks;
    private string _longestWhat = "";

    public TreeReaders(GeneratedTree rig, int count)
    {
        _rig = rig;
        _threads = new Thread[count];
        _busySince = new long[count];
        for (int i = 0; i < count; i++)
        {
            int seed = i;
            _threads[i] = new Thread(() => Loop(seed)) { IsBackground = true, Name = $"reader-{i}" };
        }
    }

    public long Operations => Interlocked.Read(ref _operations);

    public IReadOnlyList<string> Failures
    {
        get { lock (_failures) return [.. _failures]; }
    }

    public int FailureCount
    {
        get { lock (_failures) return _failures.Count; }
    }

    public TimeSpan Longest => TimeSpan.FromTicks(Interlocked.Read(ref _longestTicks));

    public string LongestWhat
    {
        get { lock (_failures) return _longestWhat; }
    }

    /// <summary>The longest operation so far (and what it was), starting a new window: the next call reports only
    /// operations that ended after this one (the fleet bench's stall of one rollout).</summary>
    public (TimeSpan Longest, string What) ResetLongest()
    {
        lock (_failures)
        {
            var longest = (Longest, _longestWhat);
            Interlocked.Exchange(ref _longestTicks, 0);
            _longestWhat = "";
            return longest;
        }
    }

    public void Start()
    {
        foreach (var thread in _threads) thread.Start();
    }

    /// <summary>Waits until every reader has done at least <paramref name="loops"/> more operations (bounded).</summary>
    public async Task AdvanceAsync(long operations, TimeSpan timeout)
    {
        var target = Operations + operations;
        var deadline = DateTime.UtcNow + timeout;
        while (Operations < target)
        {
            if (DateTime.UtcNow > deadline)
                throw new TimeoutException($"readers did only {Operations - target + operations} of {operations} operations in {timeout}");
            await Task.Delay(10);
        }
    }

    /// <summary>Stops the readers; returns false when one is still blocked after <paramref name="timeout"/>.</summary>
    public bool Stop(TimeSpan timeout)
    {
        _stop = true;
        var deadline = DateTime.UtcNow + timeout;
        foreach (var thread in _threads)
        {
            var left = deadline - DateTime.UtcNow;
            if (!thread.Join(left > TimeSpan.Zero ? left : TimeSpan.Zero)) return false;
        }
        return true;
    }

    private void Loop(int seed)
    {
        var random = new Random(seed);
        var files = _rig.FileHashes.Keys.ToArray();
        var dirs = _rig.Directories.Keys.ToArray();
        while (!_stop)
        {
            random.Shuffle(files);
            foreach (var file in files)
            {
                if (_stop) return;
                Timed(seed, "stat " + file, () => StatFile(file));
                Timed(seed, "read " + file, () => ReadFile(file));
            }
            foreach (var dir in dirs)
            {
                if (_stop) return;
                Timed(seed, "readdir " + dir, () => ReadDir(dir));
            }
        }
    }

    /// <summary>Readers whose current operation has run longer than <paramref name="olderThan"/>: blocked.</summary>
    public int Blocked(TimeSpan olderThan)
    {
        long now = Stopwatch.GetTimestamp(), blocked = 0;
        foreach (ref long since in _busySince.AsSpan())
        {
            long start = Volatile.Read(ref since);
            if (start != 0 && Stopwatch.GetElapsedTime(start, now) > olderThan) blocked++;
        }
        return (int)blocked;
    }

    private void Timed(int reader, string what, Func<string?> operation)
    {
        var watch = Stopwatch.StartNew();
        Volatile.Write(ref _busySince[reader], Stopwatch.GetTimestamp());
        string? failure;
        try
        {
            failure = operation();
        }
        catch (Exception e)
        {
            failure = $"{e.GetType().Name}: {e.Message}";
        }
        watch.Stop();
        Volatile.Write(ref _busySince[reader], 0);
        Interlocked.Increment(ref _operations);
        lock (_failures)
        {
            if (failure is not null && _failures.Count < 1000) _failures.Add($"{DateTime.UtcNow:HH:mm:ss.fff} {what}: {failure}");
            if (watch.Elapsed.Ticks > _longestTicks)
            {
                Interlocked.Exchange(ref _longestTicks, watch.Elapsed.Ticks);
                _longestWhat = what;
            }
        }
    }

    private string? StatFile(string file)
    {
        var info = new FileInfo(_rig.MountPoint + file);
        var expected = _rig.FileSizes[file];
        return info.Length == expected ? null : $"size {info.Length}, expected {expected}";
    }

    private string? ReadFile(string file)
    {
        using var handle = File.OpenHandle(_rig.MountPoint + file);
        DropCache(handle);
        var content = new byte[_rig.FileSizes[file] + 1];
        int total = 0, n;
        while ((n = RandomAccess.Read(handle, content.AsSpan(total), total)) > 0) total += n;
        var hash = SHA256.HashData(content.AsSpan(0, total));
        return hash.AsSpan().SequenceEqual(_rig.FileHashes[file]) ? null : $"content differs ({total} bytes read)";
    }

    private string? ReadDir(string dir)
    {
        var names = Directory.GetFileSystemEntries(_rig.MountPoint + dir).Select(Path.GetFileName).Order(StringComparer.Ordinal).ToArray();
        var expected = _rig.Directories[dir];
        return names.SequenceEqual(expected) ? null : $"entries [{string.Join(",", names)}], expected [{string.Join(",", expected)}]";
    }

    /// <summary>Drops the file's clean page cache pages so the next read is a FUSE READ.</summary>
    public static void DropCache(Microsoft.Win32.SafeHandles.SafeFileHandle handle) =>
        _ = PosixFadvise((int)handle.DangerousGetHandle(), 0, 0, PosixFadvDontNeed);

    [LibraryImport("libc", EntryPoint = "posix_fadvise")]
    private static partial int PosixFadvise(int fd, long offset, long length, int advice);

    public void Dispose() => Stop(TimeSpan.FromSeconds(5));
}
