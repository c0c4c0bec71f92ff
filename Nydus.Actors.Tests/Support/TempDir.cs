namespace Nydus.Actors.Tests.Support;

/// <summary>
/// A unique directory under the system temp dir, removed with everything in it on dispose. Names stay short: Unix
/// socket paths inside it must fit in 108 bytes, and the test run's own TMPDIR already adds a level.
/// </summary>
public sealed class TempDir : IDisposable
{
    public TempDir(string purpose)
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"nt-{purpose}-{Guid.NewGuid().ToString("N")[..12]}");
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    public string Combine(params string[] parts) => System.IO.Path.Combine([Path, .. parts]);

    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }
}
