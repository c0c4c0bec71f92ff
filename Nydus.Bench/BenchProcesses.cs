using System.Diagnostics;
using Nydus.Actors.Api;

namespace Nydus.Bench;

/// <summary>Starting nydusd and its helper tools from a bench, each step bounded by a timeout.</summary>
internal static class BenchProcesses
{
    /// <summary>Starts <paramref name="file"/> with its output echoed, indented, under "nydusd:".</summary>
    public static Process Start(string file, params string[] args)
    {
        var info = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string a in args) info.ArgumentList.Add(a);
        var process = Process.Start(info)!;
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) Console.WriteLine("    nydusd: " + e.Data); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) Console.WriteLine("    nydusd: " + e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return process;
    }

    /// <summary>Waits (60 s at most) until the daemon's API answers RUNNING; fails at once if the process exits.</summary>
    public static async Task WaitRunningAsync(Process process, string socket, ApiClient api)
    {
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < TimeSpan.FromSeconds(60))
        {
            if (process.HasExited) throw new InvalidOperationException($"nydusd exited with {process.ExitCode}");
            if (ApiSocket.IsLive(socket))
            {
                try
                {
                    var (status, body) = await api.SendAsync("GET", "/api/v1/daemon");
                    if (status == 200 && body.Contains("\"RUNNING\"")) return;
                }
                catch (HttpRequestException)
                {
                    // The socket exists but the server is not answering yet.
                }
            }
            await Task.Delay(20);
        }
        throw new TimeoutException("nydusd did not reach RUNNING within 60 s");
    }

    /// <summary>Runs a tool to its end (300 s at most); a non-zero exit throws with its stderr.</summary>
    public static void Run(string file, params string[] args)
    {
        var info = new ProcessStartInfo(file) { RedirectStandardError = true, UseShellExecute = false };
        foreach (string a in args) info.ArgumentList.Add(a);
        using var process = Process.Start(info)!;
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(300_000))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{file} did not finish in 300 s");
        }
        if (process.ExitCode != 0) throw new InvalidOperationException($"{file} exited {process.ExitCode}: {stderr.Result}");
    }

    /// <summary>SIGTERM first (nydusd removes its socket), then a kill if it lingers past 10 s.</summary>
    public static void Stop(Process process)
    {
        if (process.HasExited) return;
        Process.Start("kill", ["-TERM", process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])!.WaitForExit();
        if (!process.WaitForExit(10_000)) process.Kill(entireProcessTree: true);
    }
}
