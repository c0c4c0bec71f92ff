using System.Diagnostics;
using System.Runtime.InteropServices;

namespace Nydus.Bench.Passthrough;

/// <summary>
/// A FUSE server process (nydusd or libfuse's passthrough_ll) serving one mountpoint. Started mounted; disposal
/// sends SIGTERM, waits for the exit, then makes sure neither the mount nor the process tree is left behind.
/// </summary>
public sealed class FuseServerProcess : IAsyncDisposable
{
    private static readonly TimeSpan MountTimeout = TimeSpan.FromSeconds(20);
    private static readonly TimeSpan ExitTimeout = TimeSpan.FromSeconds(15);
    private const int KeptLogLines = 40;

    private readonly Process _process;
    private readonly Queue<string> _lastLines = new();

    private FuseServerProcess(string name, string mountPoint, Process process)
    {
        Name = name;
        MountPoint = mountPoint;
        _process = process;
    }

    public string Name { get; }
    public string MountPoint { get; }

    /// <summary>Starts <paramref name="executable"/> and returns once <paramref name="mountPoint"/> is a FUSE mount.</summary>
    public static async Task<FuseServerProcess> StartAsync(string name, string mountPoint, string executable, IEnumerable<string> arguments)
    {
        var info = new ProcessStartInfo(executable)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var argument in arguments) info.ArgumentList.Add(argument);

        var server = new FuseServerProcess(name, mountPoint, Process.Start(info) ?? throw new InvalidOperationException($"could not start {executable}"));
        server._process.OutputDataReceived += (_, e) => server.Keep(e.Data);
        server._process.ErrorDataReceived += (_, e) => server.Keep(e.Data);
        server._process.BeginOutputReadLine();
        server._process.BeginErrorReadLine();
        try
        {
            var clock = Stopwatch.StartNew();
            while (!MountTable.IsFuseMount(mountPoint))
            {
                if (server._process.HasExited)
                    throw new InvalidOperationException($"{name} exited with {server._process.ExitCode} before mounting {mountPoint}:\n{server.RecentOutput()}");
                if (clock.Elapsed > MountTimeout)
                    throw new TimeoutException($"{name} did not mount {mountPoint} within {MountTimeout.TotalSeconds} s:\n{server.RecentOutput()}");
                await Task.Delay(20);
            }
            return server;
        }
        catch
        {
            await server.DisposeAsync();
            throw;
        }
    }

    public string RecentOutput()
    {
        lock (_lastLines) return string.Join('\n', _lastLines);
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (!_process.HasExited)
            {
                // Both servers unmount on SIGTERM (nydusd through its signal handler, libfuse through
                // fuse_set_signal_handlers); Process.Kill would send SIGKILL and leave a dead mount behind.
                BenchSyscalls.Kill(_process.Id, BenchSyscalls.SIGTERM);
                using var timeout = new CancellationTokenSource(ExitTimeout);
                try { await _process.WaitForExitAsync(timeout.Token); }
                catch (OperationCanceledException) { Console.Error.WriteLine($"  {Name} did not exit within {ExitTimeout.TotalSeconds} s of SIGTERM"); }
            }
        }
        finally
        {
            // Never stat a FUSE mountpoint whose server may be gone (it hangs): ask /proc/self/mounts instead.
            if (MountTable.IsFuseMount(MountPoint) && BenchSyscalls.Umount2(MountPoint, BenchSyscalls.MNT_DETACH) != 0)
                Console.Error.WriteLine($"  umount2({MountPoint}, MNT_DETACH) failed: errno {Marshal.GetLastPInvokeError()}");
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
                _process.WaitForExit(ExitTimeout);
            }
            _process.Dispose();
        }
    }

    private void Keep(string? line)
    {
        if (line is null) return;
        lock (_lastLines)
        {
            _lastLines.Enqueue(line);
            if (_lastLines.Count > KeptLogLines) _lastLines.Dequeue();
        }
    }
}
