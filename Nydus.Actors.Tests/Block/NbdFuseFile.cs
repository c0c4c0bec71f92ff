using System.Diagnostics;
using Nydus.Actors.Tests.Support;

namespace Nydus.Actors.Tests.Block;

/// <summary>
/// libnbd's <c>nbdfuse -r</c> exposing an NBD export as one read-only file (DIR/nbd) through FUSE. Dispose unmounts
/// it (fusermount3 -u, then a lazy detach if that fails) and ends the nbdfuse process, also when a test failed.
/// </summary>
public sealed class NbdFuseFile : IDisposable
{
    private readonly Process _process;

    public NbdFuseFile(string directory, string uri)
    {
        Directory = directory;
        System.IO.Directory.CreateDirectory(directory);
        string pidFile = directory + ".pid";
        var info = new ProcessStartInfo("nbdfuse") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in new[] { "-r", "-P", pidFile, directory, uri }) info.ArgumentList.Add(a);
        _process = Process.Start(info)!;
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
        var deadline = Stopwatch.StartNew();
        while (!File.Exists(pidFile) || !File.Exists(FilePath))
        {
            if (deadline.Elapsed > TimeSpan.FromSeconds(30) || _process.HasExited)
            {
                Dispose();
                throw new InvalidOperationException($"nbdfuse did not expose {uri} at {FilePath} (exited: {_process.HasExited})");
            }

            Thread.Sleep(50);
        }
    }

    public string Directory { get; }

    public string FilePath => Path.Combine(Directory, "nbd");

    public void Dispose()
    {
        try
        {
            TreeBuilder.Run("fusermount3", "-u", Directory);
        }
        catch (InvalidOperationException)
        {
            NydusdMount.DetachIfMounted(Directory);
        }

        if (!_process.WaitForExit(10_000))
        {
            _process.Kill(entireProcessTree: true);
            _process.WaitForExit(10_000);
        }

        _process.Dispose();
    }
}
