using System.Text;

namespace Nydus.Bench;

/// <summary>A titled table of results, printed to the console and written as Markdown under bench/.</summary>
public sealed class BenchReport(string title, string[] columns)
{
    private readonly List<string[]> _rows = [];
    private readonly List<string> _notes = [];
    private readonly List<(string Caption, string Path)> _plots = [];

    public void Add(params string[] row) => _rows.Add(row);
    public void Note(string note) => _notes.Add(note);

    /// <summary>An image shown under the table; <paramref name="relativePath"/> is relative to bench/.</summary>
    public void Plot(string caption, string relativePath) => _plots.Add((caption, relativePath));

    public string ToMarkdown()
    {
        var sb = new StringBuilder();
        sb.AppendLine($"# {title}").AppendLine();
        sb.AppendLine($"Run {DateTimeOffset.UtcNow:yyyy-MM-dd HH:mm} UTC on {Environment.ProcessorCount} cores, {Environment.OSVersion}.").AppendLine();
        sb.AppendLine("| " + string.Join(" | ", columns) + " |");
        sb.AppendLine("|" + string.Concat(columns.Select(_ => "---|")));
        foreach (var row in _rows) sb.AppendLine("| " + string.Join(" | ", row) + " |");
        if (_notes.Count > 0) sb.AppendLine();
        foreach (var note in _notes) sb.AppendLine($"- {note}");
        if (_plots.Count > 0) sb.AppendLine().AppendLine("## Ratios over time").AppendLine();
        foreach (var (caption, path) in _plots) sb.AppendLine($"![{caption}]({path})").AppendLine();
        return sb.ToString();
    }

    public void Print() => Console.WriteLine(ToMarkdown());

    public void Write(string path)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllText(path, ToMarkdown());
        Console.WriteLine($"(written to {path})");
    }
}
