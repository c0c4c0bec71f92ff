using System.Diagnostics;
using System.Globalization;
using System.Runtime;
using System.Runtime.InteropServices;
using System.Text;

namespace Nydus.Host;

/// <summary>
/// Where a start's time and memory go: the host marks each phase as it completes (time since exec, resident memory
/// then) and logs them as one line once the daemon serves ("Start-up: ..."), together with what the runtime spent
/// compiling code. The startup bench reads that line for its breakdown; an operator reads it to see why a start was
/// slow on a loaded machine. Phases that run at the same time (the API server beside the actor system) are marks on
/// one clock, not durations to add up.
/// </summary>
public sealed partial class StartupTimeline
{
    /// <summary>The log line's first words: the startup bench finds the line by them.</summary>
    public const string LinePrefix = "Start-up:";

    private readonly Lock _gate = new();
    private readonly List<(string Phase, double SinceExecMs, double CpuMs, long RssKiB)> _marks = [];
    private readonly long _createdTimestamp = Stopwatch.GetTimestamp();
    private readonly double _execToCreatedMs = ExecToNowMs();

    /// <summary>Starts the timeline with its first mark, "host": exec to the daemon's host code (the runtime's own
    /// start, assembly loading and the command line's parse).</summary>
    public StartupTimeline()
    {
        Mark("host");
    }

    /// <summary>Records that <paramref name="phase"/> is done now. Safe from any thread.</summary>
    public void Mark(string phase)
    {
        var sinceExec = _execToCreatedMs + Stopwatch.GetElapsedTime(_createdTimestamp).TotalMilliseconds;
        // CPU time as well as wall time: on a loaded machine the wall clock mostly measures the others' work.
        var cpu = Environment.CpuUsage.TotalTime.TotalMilliseconds;
        var rss = ReadRssKiB();
        lock (_gate) _marks.Add((phase, sinceExec, cpu, rss));
    }

    /// <summary>One line: every mark as <c>phase=wall/cpu/rss</c> (wall ms since exec, CPU ms the process used so
    /// far, resident MiB), then the JIT's count and time, the GC count and the threads. Example:
    /// <c>host=62ms/40cpu/24MiB journal-files=80ms/55cpu/28MiB ... jit=2400 methods in 310 ms</c>.</summary>
    public string Summary()
    {
        var line = new StringBuilder(LinePrefix);
        lock (_gate)
        {
            foreach (var (phase, ms, cpu, rss) in _marks)
                line.Append(CultureInfo.InvariantCulture, $" {phase}={ms:F0}ms/{cpu:F0}cpu/{rss / 1024.0:F0}MiB");
        }
        line.Append(CultureInfo.InvariantCulture,
            $"; jit={JitInfo.GetCompiledMethodCount()} methods in {JitInfo.GetCompilationTime().TotalMilliseconds:F0} ms");
        line.Append(CultureInfo.InvariantCulture,
            $"; gc={GC.CollectionCount(0)}/{GC.CollectionCount(1)}/{GC.CollectionCount(2)} heap={GC.GetTotalMemory(false) / 1048576.0:F1}MiB");
        line.Append(CultureInfo.InvariantCulture, $"; threads={System.Diagnostics.Process.GetCurrentProcess().Threads.Count}");
        line.Append(CultureInfo.InvariantCulture, $"; server-gc={GCSettings.IsServerGC} conserve={AppContext.GetData("GCConserveMemory") ?? 0}");
        return line.ToString();
    }

    /// <summary>Time from the exec of this process to now: its start time (/proc/self/stat field 22, in clock ticks of
    /// 10 ms since boot) against CLOCK_BOOTTIME, the clock it is counted on; so good to about 10 ms.</summary>
    private static double ExecToNowMs()
    {
        try
        {
            var stat = File.ReadAllText("/proc/self/stat");
            // Fields after the command, which is in parentheses and may hold spaces.
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            var startTicks = long.Parse(fields[19], CultureInfo.InvariantCulture);
            if (clock_gettime(ClockBoottime, out var now) != 0) return 0;
            var nowMs = now.Seconds * 1000.0 + now.Nanoseconds / 1e6;
            return Math.Max(0, nowMs - startTicks * 10.0);
        }
        catch (Exception e) when (e is IOException or FormatException or IndexOutOfRangeException)
        {
            return 0;
        }
    }

    private static long ReadRssKiB()
    {
        try
        {
            // /proc/self/statm: size resident shared ... in pages.
            var statm = File.ReadAllText("/proc/self/statm").Split(' ');
            return long.Parse(statm[1], CultureInfo.InvariantCulture) * Environment.SystemPageSize / 1024;
        }
        catch (Exception e) when (e is IOException or FormatException or IndexOutOfRangeException)
        {
            return 0;
        }
    }

    private const int ClockBoottime = 7;

    [StructLayout(LayoutKind.Sequential)]
    private struct Timespec
    {
        public long Seconds;
        public long Nanoseconds;
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int clock_gettime(int clock, out Timespec time);
}
