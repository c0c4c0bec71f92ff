using Nydus.Actors.Tests.Support;

namespace Nydus.Actors.Tests.Rafs;

/// <summary>Builds the rich source tree once per test class and snapshots its metadata.</summary>
public sealed class GeneratedTreeFixture : IDisposable
{
    public GeneratedTreeFixture()
    {
        if (Environment.UserName != "root")
        {
            throw new InvalidOperationException("generated EROFS tests need root (mknod, chown, trusted.* xattrs)");
        }

        Tree = new TreeBuilder();
        try
        {
            Tree.BuildRich();
            Expected = TreeSnapshot.Take(Tree.Root);
        }
        catch
        {
            // xunit does not dispose a fixture whose constructor threw.
            Tree.Dispose();
            throw;
        }
    }

    public TreeBuilder Tree { get; }

    public Dictionary<string, TreeEntry> Expected { get; }

    /// <summary>Runs mkfs.erofs into the fixture's work dir; returns (image, blob device or null).</summary>
    public (string Image, string? BlobDevice) MakeImage(string name, bool blobDevice, params string[] options)
    {
        string image = Path.Combine(Tree.WorkDir, name + ".erofs");
        string? blob = blobDevice ? Path.Combine(Tree.WorkDir, name + ".blob") : null;
        var args = new List<string>(options) { "--quiet" };
        if (blob is not null)
        {
            args.Add("--blobdev=" + blob);
        }

        args.Add(image);
        args.Add(Tree.Root);
        TreeBuilder.Run("mkfs.erofs", args.ToArray());
        return (image, blob);
    }

    public void Dispose() => Tree.Dispose();
}
