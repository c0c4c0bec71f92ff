namespace Nydus.Actors.Config;

/// <summary>
/// Limits on a path given as text (a mountpoint, a mount source, a prefetch entry), checked before it is used or
/// logged: at most PATH_MAX bytes, and no control characters (a newline in a path would forge a log line, and no
/// kernel path API takes a NUL).
/// </summary>
public static class PathText
{
    /// <summary>PATH_MAX (4096) less its terminating NUL.</summary>
    public const int MaxBytes = 4095;

    /// <summary>What is wrong with <paramref name="path"/>, or null when nothing is.</summary>
    public static string? Problem(string path)
    {
        foreach (var c in path)
            if (char.IsControl(c)) return c == '\0' ? "it contains a NUL character" : $"it contains the control character U+{(int)c:X4}";
        int bytes = System.Text.Encoding.UTF8.GetByteCount(path);
        return bytes > MaxBytes ? $"it is {bytes} bytes long, more than PATH_MAX ({MaxBytes + 1} with its NUL)" : null;
    }

    /// <summary>Quotes <paramref name="path"/> for a message, shortened and with control characters escaped, so that an
    /// error about a bad path is itself short and one line.</summary>
    public static string Quote(string? path)
    {
        if (path is null) return "(none)";
        var text = new System.Text.StringBuilder(Math.Min(path.Length, 130) + 2).Append('\'');
        foreach (var c in path.Length > 120 ? path[..120] : path)
        {
            if (char.IsControl(c)) text.Append("\\u").Append(((int)c).ToString("x4"));
            else text.Append(c);
        }
        if (path.Length > 120) text.Append($"...' ({path.Length} characters)");
        else text.Append('\'');
        return text.ToString();
    }
}
