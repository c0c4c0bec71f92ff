namespace Nydus.Actors.Config;

/// <summary>
/// The list of files to prefetch when a RAFS instance is mounted: from <c>--prefetch-files &lt;file&gt;</c> (one path a
/// line) or from the API's <c>prefetch_files</c> array. Every entry must be absolute; <c>["/"]</c> means everything.
/// </summary>
public static class PrefetchList
{
    /// <summary>
    /// Reads a <c>--prefetch-files</c> file: each line trimmed, blank lines skipped, every entry absolute.
    /// </summary>
    public static IReadOnlyList<string> ParseFile(string path)
    {
        ArgumentNullException.ThrowIfNull(path);

        string text;
        try
        {
            text = File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ConfigException(ConfigErrorKind.Unreadable, $"cannot read prefetch list file {path}: {e.Message}", e);
        }

        return Parse(text, path);
    }

    /// <summary>The file format of <see cref="ParseFile"/> applied to text already read; <paramref name="sourceName"/> names it in errors.</summary>
    public static IReadOnlyList<string> Parse(string text, string sourceName)
    {
        ArgumentNullException.ThrowIfNull(text);

        var entries = new List<string>();
        var lineNumber = 0;
        foreach (var rawLine in text.AsSpan().EnumerateLines())
        {
            lineNumber++;
            var line = rawLine.Trim();
            if (line.IsEmpty)
            {
                continue;
            }

            if (line[0] != '/')
            {
                throw new ConfigException(
                    ConfigErrorKind.InvalidPrefetchList,
                    $"prefetch list {sourceName}, line {lineNumber}: '{line}' is not an absolute path");
            }

            entries.Add(line.ToString());
        }

        return entries;
    }

    /// <summary>
    /// Checks an API <c>prefetch_files</c> array (upstream's <c>validate_prefetch_file_list</c>): null means no list;
    /// otherwise every entry must be absolute. Returns the list unchanged.
    /// </summary>
    public static IReadOnlyList<string>? Validate(IReadOnlyList<string>? entries)
    {
        if (entries is null)
        {
            return null;
        }

        for (var index = 0; index < entries.Count; index++)
        {
            var entry = entries[index];
            if (entry is null || !entry.StartsWith('/'))
            {
                throw new ConfigException(
                    ConfigErrorKind.InvalidPrefetchList,
                    $"prefetch_files[{index}]: {PathText.Quote(entry)} is not an absolute path");
            }

            if (PathText.Problem(entry) is { } problem)
            {
                throw new ConfigException(ConfigErrorKind.InvalidPrefetchList, $"prefetch_files[{index}]: {PathText.Quote(entry)}: {problem}");
            }
        }

        return entries;
    }
}
