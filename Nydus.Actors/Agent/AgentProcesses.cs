using System.Diagnostics;
using System.Runtime.InteropServices;
using Nydus.Actors.Interop;

namespace Nydus.Actors.Agent;

/// <summary>
/// The node agent's view of processes by pid, which must work for daemons that are not its children (after an agent
/// restart): identity is (pid, start time from <c>/proc/PID/stat</c>), so a reused pid is never mistaken for a daemon.
/// </summary>
public static partial class AgentProcesses
{
    public const int SIGTERM = 15;
    public const int SIGKILL = 9;

    /// <summary>Field 22 of /proc/PID/stat (clock ticks since boot), or null when there is no such (live) process.
    /// A zombie counts as gone.</summary>
    public static long? StartTime(int pid)
    {
        string text;
        try
        {
            text = File.ReadAllText($"/proc/{pid}/stat");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
        // "pid (comm) S ppid ...": comm may hold spaces and parentheses, so fields count from the last ')'.
        int close = text.LastIndexOf(')');
        if (close < 0) return null;
        var fields = text[(close + 2)..].Split(' ');
        if (fields.Length < 20 || fields[0] is "Z" or "X") return null;
        return long.TryParse(fields[19], out var start) ? start : null;
    }

    /// <summary>Whether the process <paramref name="pid"/> started at <paramref name="startTime"/> is still alive.</summary>
    public static bool IsAlive(int pid, long startTime) => pid > 0 && StartTime(pid) == startTime;

    /// <summary>Sends a signal if the process is still the one started at <paramref name="startTime"/>.</summary>
    public static bool Signal(int pid, long startTime, int signal) => IsAlive(pid, startTime) && kill(pid, signal) == 0;

    /// <summary>Waits (bounded) until the process is gone; true when it is.</summary>
    public static async Task<bool> WaitGoneAsync(int pid, long startTime, TimeSpan timeout)
    {
        var deadline = Stopwatch.StartNew();
        while (IsAlive(pid, startTime))
        {
            if (deadline.Elapsed > timeout) return false;
            await Task.Delay(20);
        }
        return true;
    }

    /// <summary>
    /// Starts <paramref name="binary"/> in its own session (<c>setsid</c>: killing the agent never kills it), with
    /// stdin from /dev/null and stdout/stderr appended to <paramref name="logFile"/> (never a pipe to the agent: a dead
    /// agent would break the daemon's writes), inheriting the agent's environment. Returns its pid and start time.
    /// </summary>
    public static (Process Process, long StartTime) Launch(string binary, IReadOnlyList<string> args, string logFile)
    {
        // sh execs setsid, which (not a group leader: .NET does not make its children ones) calls setsid(2) and execs
        // nydusd without forking, so the pid .NET returns is the daemon's.
        var info = new ProcessStartInfo("/bin/sh") { UseShellExecute = false };
        info.ArgumentList.Add("-c");
        info.ArgumentList.Add("log=$1; shift; exec setsid -- \"$@\" </dev/null >>\"$log\" 2>&1");
        info.ArgumentList.Add("nydusd-agent-launch");
        info.ArgumentList.Add(logFile);
        info.ArgumentList.Add(binary);
        foreach (var a in args) info.ArgumentList.Add(a);
        var process = Process.Start(info) ?? throw new IOException($"cannot start {binary}");
        // The start time does not change across the execs; read it while the process surely exists.
        var start = StartTime(process.Id);
        if (start is null)
        {
            process.Dispose();
            throw new IOException($"{binary} (pid {process.Id}) exited at once; see {logFile}");
        }
        return (process, start.Value);
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int kill(int pid, int signal);
}

/// <summary>
/// Watches one process for its exit with pidfd_open(2) and poll(2) on a dedicated thread (any process, not only
/// the agent's children), and calls <c>onExit</c> once when it ends. Disposing stops watching without a call.
/// </summary>
public sealed partial class ProcessWatcher : IDisposable
{
    private const long SysPidfdOpen = 434;
    private readonly int _pid;
    private readonly long _startTime;
    private readonly Action _onExit;
    private readonly Thread _thread;
    private volatile bool _disposed;

    public ProcessWatcher(int pid, long startTime, Action onExit)
    {
        _pid = pid;
        _startTime = startTime;
        _onExit = onExit;
        _thread = new Thread(Run) { IsBackground = true, Name = $"watch pid {pid}" };
        _thread.Start();
    }


    private unsafe void Run()
    {
        int pidfd = (int)syscall(SysPidfdOpen, _pid, 0);
        try
        {
            // The pid may have been reused between the start-time check and the open: check again with the fd held.
            if (pidfd < 0 || !AgentProcesses.IsAlive(_pid, _startTime))
            {
                if (!_disposed) _onExit();
                return;
            }
            var poll = new Libc.PollFd { Fd = pidfd, Events = Libc.POLLIN };
            while (!_disposed)
            {
                poll.ReturnedEvents = 0;
                int ready = Libc.Poll(&poll, 1, 250);
                if (ready > 0)
                {
                    if (!_disposed) _onExit();
                    return;
                }
            }
        }
        finally
        {
            if (pidfd >= 0) Libc.Close(pidfd);
        }
    }

    [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true)]
    private static partial long syscall(long number, int pid, uint flags);

    public void Dispose() => _disposed = true;
}
