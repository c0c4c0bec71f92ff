namespace Nydus.Actors.Tests.Support;

/// <summary>A unique directory under the system temp dir, removed with everything in it on dispose.</summary>
public sealed class TempDir : IDisposable
{
    public TempDir(string purpose)
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"nydus-test-{purpose}-{Guid.NewGuid():N}");
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
