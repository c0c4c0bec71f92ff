using System.Runtime.InteropServices;

namespace Nydus.Host;

/// <summary>Raises RLIMIT_NOFILE as upstream's --rlimit-nofile does: a daemon serving many mounts and blobs holds
/// many descriptors.</summary>
internal static partial class ProcessLimits
{
    private const int RLIMIT_NOFILE = 7;

    [StructLayout(LayoutKind.Sequential)]
    private struct RLimit
    {
        public ulong Current;
        public ulong Max;
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int getrlimit(int resource, out RLimit limit);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int setrlimit(int resource, in RLimit limit);

    /// <summary>Sets the soft and hard limit to <paramref name="wanted"/>, capped as upstream caps it (fs.file-max
    /// less 16,384, and the kernel's fs.nr_open); 0 leaves the limits alone. Returns the limit in force.</summary>
    public static ulong RaiseOpenFiles(ulong wanted)
    {
        if (getrlimit(RLIMIT_NOFILE, out var current) != 0) return 0;
        if (wanted == 0) return current.Current;
        var cap = Math.Min(ReadProcNumber("/proc/sys/fs/file-max") - 16384, ReadProcNumber("/proc/sys/fs/nr_open"));
        var target = Math.Min(wanted, cap);
        if (target <= current.Current) return current.Current;
        var limit = new RLimit { Current = target, Max = Math.Max(target, current.Max) };
        if (setrlimit(RLIMIT_NOFILE, limit) != 0)
        {
            // Without CAP_SYS_RESOURCE only the soft limit can move, up to the hard one.
            limit = new RLimit { Current = Math.Min(target, current.Max), Max = current.Max };
            if (setrlimit(RLIMIT_NOFILE, limit) != 0) return current.Current;
        }
        return limit.Current;
    }

    private static ulong ReadProcNumber(string path)
    {
        try
        {
            return ulong.TryParse(File.ReadAllText(path).Trim(), out var n) ? n : ulong.MaxValue;
        }
        catch (IOException)
        {
            return ulong.MaxValue;
        }
    }
}
