using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;
using Nydus.Actors.Api;

namespace Nydus.Actors.Tests.Support;

/// <summary>
/// A real nydusd process started from the build output, with its console captured. Disposing kills it if it still
/// runs, so no test leaves a daemon behind.
/// </summary>
public sealed partial class NydusdProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _output = new();

    private NydusdProcess(Process process)
    {
        _process = process;
    }

    public int Pid => _process.Id;
    public bool HasExited => _process.HasExited;

    public string Output
    {
        get { lock (_output) return _output.ToString(); }
    }

    /// <summary>The nydusd of the build output, or the one <c>$NYDUS_NYDUSD</c> names (the fleet bench, which links this
    /// file, runs the published build).</summary>
    public static string BinaryPath => Environment.GetEnvironmentVariable("NYDUS_NYDUSD") is { Length: > 0 } path
        ? path
        : Path.Combine(AppContext.BaseDirectory, "nydusd");

    public static NydusdProcess Start(params string[] args) => StartIn(null, args);

    /// <summary>Starts nydusd with <paramref name="workingDirectory"/> as its current directory.</summary>
    public static NydusdProcess StartIn(string? workingDirectory, params string[] args) => StartWith(workingDirectory, null, args);

    /// <summary>Starts nydusd with extra environment variables (on top of this process's own).</summary>
    public static NydusdProcess StartIn(string? workingDirectory, IReadOnlyDictionary<string, string>? environment, params string[] args)
        => StartWith(workingDirectory, environment?.ToDictionary(e => e.Key, e => (string?)e.Value), args);

    /// <summary>Starts nydusd with extra environment variables (a null value removes one).</summary>
    public static NydusdProcess StartWith(string? workingDirectory, IReadOnlyDictionary<string, string?>? environment, params string[] args)
        => Launch(BinaryPath, args, workingDirectory, environment);

    /// <summary>Starts nydusd inside the network namespace <paramref name="name"/> (`ip netns`) and nothing else: nsenter
    /// enters only the net namespace, so the mounts its daemons make are the host's, and it execs nydusd (same pid).</summary>
    public static NydusdProcess StartInNetworkNamespace(string name, params string[] args)
        => Launch("nsenter", [$"--net=/run/netns/{name}", "--", BinaryPath, .. args], null, null);

    private static NydusdProcess Launch(string file, IEnumerable<string> args, string? workingDirectory, IReadOnlyDictionary<string, string?>? environment)
    {
        var info = new ProcessStartInfo(file)
        {
            WorkingDirectory = workingDirectory ?? "",
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        foreach (var a in args) info.ArgumentList.Add(a);
        foreach (var (name, value) in environment ?? new Dictionary<string, string?>())
        {
            if (value is null) info.Environment.Remove(name);
            else info.Environment[name] = value;
        }
        var process = new Process { StartInfo = info, EnableRaisingEvents = true };
        var result = new NydusdProcess(process);
        process.OutputDataReceived += (_, e) => result.Append(e.Data);
        process.ErrorDataReceived += (_, e) => result.Append(e.Data);
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return result;
    }

    /// <summary>Runs nydusd to completion (for command-line errors) and returns its exit code and output.</summary>
    public static async Task<(int ExitCode, string Output)> RunAsync(TimeSpan timeout, params string[] args)
    {
        await using var process = Start(args);
        var code = await process.WaitForExitAsync(timeout);
        return (code, process.Output);
    }

    /// <summary>Runs nydusd to its end with stdout and stderr apart and raw (not split into lines), for tests of what it
    /// prints (version block, ctl output); killed past <paramref name="timeout"/>.</summary>
    public static async Task<(int Code, string Stdout, string Stderr)> RunRawAsync(TimeSpan timeout, params string[] args)
    {
        var info = new ProcessStartInfo(BinaryPath) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) info.ArgumentList.Add(a);
        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await process.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill();
            throw;
        }
        return (process.ExitCode, await stdout, await stderr);
    }

    // Set NYDUS_TEST_DAEMON_LOGS to a directory to keep every daemon's output there as <pid>.log: a test whose
    // process hangs (a reader blocked on FUSE) never prints the output it kept in memory.
    // Made if missing: a write that throws here runs on a thread-pool callback and would take the test host down.
    private static readonly string? LogDirectory = Environment.GetEnvironmentVariable("NYDUS_TEST_DAEMON_LOGS") is { Length: > 0 } dir
        ? Directory.CreateDirectory(dir).FullName
        : null;

    private void Append(string? line)
    {
        if (line is null) return;
        lock (_output)
        {
            _output.AppendLine(line);
            if (LogDirectory is not null)
                File.AppendAllText(Path.Combine(LogDirectory, $"{_process.Id}.log"), line + Environment.NewLine);
        }
    }

    /// <summary>Waits until the API on <paramref name="socket"/> reports <paramref name="state"/>.</summary>
    public async Task WaitForStateAsync(string socket, string state, TimeSpan timeout)
    {
        try
        {
            await ApiClient.WaitForStateAsync(socket, state, timeout,
                () => _process.HasExited ? $"nydusd exited with {_process.ExitCode}" : null, TimeSpan.FromMilliseconds(25));
        }
        catch (Exception e) when (e is InvalidOperationException or TimeoutException)
        {
            // The daemon's own output says why; the tests print the exception.
            throw e is TimeoutException ? new TimeoutException($"{e.Message}:\n{Output}", e) : new InvalidOperationException($"{e.Message}:\n{Output}", e);
        }
    }

    /// <summary>Waits until the daemon has written <paramref name="text"/> (e.g. a supervised cold start's "Journal caught
    /// up", after which the instances its journal records serve again).</summary>
    public async Task WaitForOutputAsync(string text, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (!Output.Contains(text, StringComparison.Ordinal))
        {
            if (_process.HasExited) throw new InvalidOperationException($"nydusd exited with {_process.ExitCode} before writing '{text}':\n{Output}");
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"nydusd did not write '{text}' within {timeout}:\n{Output}");
            await Task.Delay(25);
        }
    }

    public async Task<int> WaitForExitAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await _process.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            throw new TimeoutException($"nydusd did not exit within {timeout}:\n{Output}");
        }
        return _process.ExitCode;
    }

    public void Signal(int signal)
    {
        if (kill(_process.Id, signal) != 0)
            throw new InvalidOperationException($"kill({_process.Id}, {signal}) failed: errno {Marshal.GetLastPInvokeError()}");
    }

    public const int SIGTERM = 15;
    public const int SIGINT = 2;
    public const int SIGKILL = 9;

    [LibraryImport("libc", SetLastError = true)]
    private static partial int kill(int pid, int signal);

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            try
            {
                _process.Kill(entireProcessTree: true);
                await _process.WaitForExitAsync(new CancellationTokenSource(TimeSpan.FromSeconds(10)).Token);
            }
            catch (InvalidOperationException) { }
            catch (OperationCanceledException) { }
        }
        _process.Dispose();
    }
}
