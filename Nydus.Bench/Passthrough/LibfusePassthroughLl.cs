using System.Diagnostics;
using System.IO.Compression;

namespace Nydus.Bench.Passthrough;

/// <summary>
/// Builds libfuse's low-level passthrough example (shipped as source by the libfuse3-dev package) into a
/// scratch folder, so the benchmark compares against the exact libfuse installed on this machine.
/// </summary>
public static class LibfusePassthroughLl
{
    public const string ExamplesFolder = "/usr/share/doc/libfuse3-dev/examples";
    private static readonly TimeSpan BuildTimeout = TimeSpan.FromMinutes(2);

    /// <summary>Compiles passthrough_ll.c with -O2 against fuse3 (pkg-config) and returns the binary's path.</summary>
    public static async Task<string> BuildAsync(string buildFolder)
    {
        Directory.CreateDirectory(buildFolder);
        // Debian may ship examples gzip-compressed; the example can include helper headers from the same folder,
        // so every header is copied next to the source.
        foreach (var file in Directory.EnumerateFiles(ExamplesFolder))
        {
            var name = Path.GetFileName(file);
            if (name == "passthrough_ll.c" || name == "passthrough_ll.c.gz" || name.EndsWith(".h", StringComparison.Ordinal) || name.EndsWith(".h.gz", StringComparison.Ordinal))
                Unpack(file, buildFolder);
        }
        var source = Path.Combine(buildFolder, "passthrough_ll.c");
        if (!File.Exists(source))
            throw new FileNotFoundException($"passthrough_ll.c(.gz) not found in {ExamplesFolder}: install libfuse3-dev");

        var flags = (await RunAsync("pkg-config", "--cflags", "--libs", "fuse3")).Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var binary = Path.Combine(buildFolder, "passthrough_ll");
        await RunAsync("cc", ["-O2", "-o", binary, source, .. flags]);
        return binary;
    }

    private static void Unpack(string file, string folder)
    {
        if (!file.EndsWith(".gz", StringComparison.Ordinal))
        {
            File.Copy(file, Path.Combine(folder, Path.GetFileName(file)), overwrite: true);
            return;
        }
        using var compressed = File.OpenRead(file);
        using var gzip = new GZipStream(compressed, CompressionMode.Decompress);
        using var target = File.Create(Path.Combine(folder, Path.GetFileNameWithoutExtension(file)));
        gzip.CopyTo(target);
    }

    private static async Task<string> RunAsync(string tool, params string[] arguments)
    {
        var info = new ProcessStartInfo(tool) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var argument in arguments) info.ArgumentList.Add(argument);
        using var process = Process.Start(info) ?? throw new InvalidOperationException($"could not start {tool}");
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(BuildTimeout);
        try { await process.WaitForExitAsync(timeout.Token); }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{tool} did not finish within {BuildTimeout.TotalMinutes} min");
        }
        if (process.ExitCode != 0) throw new InvalidOperationException($"{tool} {string.Join(' ', arguments)} failed: {await error}");
        return (await output).Trim();
    }
}
