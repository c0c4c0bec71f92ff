using System.Diagnostics;
using System.Text.Json;

namespace Nydus.Bench.Passthrough;

/// <summary>One fio run's figures: read/write bandwidth and IOPS as fio reports them, plus the wall time of the run.</summary>
public readonly record struct FioResult(double ReadKiBPerSecond, double ReadIops, double WriteKiBPerSecond, TimeSpan WallTime);

/// <summary>Runs fio (psync engine, JSON output) against one file and parses the grouped job result.</summary>
public static class Fio
{
    private static readonly TimeSpan RunTimeout = TimeSpan.FromMinutes(3);

    public static async Task<FioResult> RunAsync(string file, params string[] job)
    {
        var info = new ProcessStartInfo("fio")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var argument in new[] { "--name=bench", "--filename=" + file, "--ioengine=psync", "--direct=0", "--group_reporting", "--output-format=json" })
            info.ArgumentList.Add(argument);
        foreach (var argument in job) info.ArgumentList.Add(argument);

        var clock = Stopwatch.StartNew();
        using var process = Process.Start(info) ?? throw new InvalidOperationException("could not start fio");
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        using (var timeout = new CancellationTokenSource(RunTimeout))
        {
            try { await process.WaitForExitAsync(timeout.Token); }
            catch (OperationCanceledException)
            {
                process.Kill(entireProcessTree: true);
                throw new TimeoutException($"fio on {file} did not finish within {RunTimeout.TotalMinutes} min");
            }
        }
        var wall = clock.Elapsed;
        if (process.ExitCode != 0)
            throw new InvalidOperationException($"fio on {file} failed with {process.ExitCode}: {await error}");

        // fio may print notes before the JSON document.
        var json = await output;
        using var document = JsonDocument.Parse(json[json.IndexOf('{')..]);
        var grouped = document.RootElement.GetProperty("jobs")[0];
        var read = grouped.GetProperty("read");
        var write = grouped.GetProperty("write");
        return new FioResult(read.GetProperty("bw").GetDouble(), read.GetProperty("iops").GetDouble(), write.GetProperty("bw").GetDouble(), wall);
    }
}
