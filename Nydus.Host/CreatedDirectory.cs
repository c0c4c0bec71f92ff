namespace Nydus.Host;

/// <summary>
/// A directory a process made for itself (and the missing parents it needed), so that a failed start can take back
/// exactly what it created and nothing that was there before: the leaf, its own, goes with what it holds; each parent
/// only if it is empty by then (another daemon may have put its own state beside ours meanwhile).
/// </summary>
public sealed class CreatedDirectory
{
    private readonly List<string> _created;

    private CreatedDirectory(string path, List<string> created)
    {
        Path = path;
        _created = created;
    }

    public string Path { get; }

    /// <summary>True when this call made the directory itself (it did not exist before).</summary>
    public bool IsNew => _created.Count > 0;

    /// <param name="mode">The mode of the directories made (state dirs are owner-only); null: the default.</param>
    public static CreatedDirectory Create(string path, UnixFileMode? mode = null)
    {
        var full = System.IO.Path.GetFullPath(path);
        var missing = new List<string>();
        for (var dir = full; dir is not null && !Directory.Exists(dir); dir = System.IO.Path.GetDirectoryName(dir))
            missing.Add(dir);
        if (mode is { } m) Directory.CreateDirectory(full, m);
        else Directory.CreateDirectory(full);
        return new CreatedDirectory(full, missing);
    }

    /// <summary>Removes what <see cref="Create"/> made; a directory it found already there is left alone.</summary>
    public void RemoveCreated()
    {
        if (_created.Count == 0) return;
        try
        {
            Directory.Delete(_created[0], recursive: true);
            foreach (var parent in _created.Skip(1))
            {
                if (Directory.EnumerateFileSystemEntries(parent).Any()) break;
                Directory.Delete(parent);
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Serilog.Log.Warning("Could not remove {Directory} after the failed start: {Error}", _created[0], e.Message);
        }
        _created.Clear();
    }
}
