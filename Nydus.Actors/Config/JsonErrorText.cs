using System.Text.Json;

namespace Nydus.Actors.Config;

/// <summary>Turns System.Text.Json's binding errors into "field: problem" text that reads like the validator's.</summary>
internal static class JsonErrorText
{
    public static string Describe(JsonException exception)
    {
        var message = exception.Message;

        // STJ appends " Path: $.a.b | LineNumber: … | BytePositionInLine: …"; the path is reported separately below,
        // and line numbers of a TOML document converted to JSON would point nowhere.
        var pathSuffix = message.IndexOf(" Path: ", StringComparison.Ordinal);
        if (pathSuffix >= 0)
        {
            message = message[..pathSuffix];
        }

        var field = exception.Path is { Length: > 0 } path ? path.TrimStart('$').TrimStart('.') : "";
        return field.Length == 0 ? message : $"{field}: {message}";
    }
}
