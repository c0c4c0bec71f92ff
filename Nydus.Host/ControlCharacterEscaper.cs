using Serilog.Core;
using Serilog.Events;

namespace Nydus.Host;

/// <summary>
/// Escapes control characters (a newline above all) in every text value of a log event, so that input quoted in a log
/// line (a path, a config, a request) cannot end the line and forge another one. The message template is ours;
/// only the values come from outside. Exceptions are left as they are (their stack traces span lines on purpose).
/// </summary>
internal sealed class ControlCharacterEscaper : ILogEventEnricher
{
    public void Enrich(LogEvent logEvent, ILogEventPropertyFactory propertyFactory)
    {
        List<LogEventProperty>? changed = null;
        foreach (var (name, value) in logEvent.Properties)
        {
            if (value is ScalarValue { Value: string text } && NeedsEscape(text))
                (changed ??= []).Add(new LogEventProperty(name, new ScalarValue(Escape(text))));
        }
        if (changed is null) return;
        foreach (var property in changed) logEvent.AddOrUpdateProperty(property);
    }

    private static bool NeedsEscape(string text)
    {
        foreach (var c in text)
            if (char.IsControl(c)) return true;
        return false;
    }

    private static string Escape(string text)
    {
        var escaped = new System.Text.StringBuilder(text.Length + 8);
        foreach (var c in text)
        {
            if (!char.IsControl(c)) escaped.Append(c);
            else if (c == '\n') escaped.Append("\\n");
            else if (c == '\r') escaped.Append("\\r");
            else if (c == '\t') escaped.Append("\\t");
            else escaped.Append("\\u").Append(((int)c).ToString("x4"));
        }
        return escaped.ToString();
    }
}
