namespace Nydus.Actors.Tests.Support;

/// <summary>Locates the shared upstream fixtures (../shared/fixtures/upstream relative to the repository root).</summary>
public static class ImageFixtures
{
    private static readonly Lazy<string> Root = new(FindRepositoryRoot);

    public static string RepositoryRoot => Root.Value;

    public static string Upstream => Path.GetFullPath(Path.Combine(RepositoryRoot, "..", "shared", "fixtures", "upstream"));

    public static string UpstreamFile(params string[] parts) => Path.Combine(Upstream, Path.Combine(parts));

    private static string FindRepositoryRoot()
    {
        for (DirectoryInfo? dir = new(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Nydus.sln")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException($"no Nydus.sln above {AppContext.BaseDirectory}");
    }
}
