using System.Text.Json;

namespace Nydus.Actors.Config;

/// <summary>
/// Turns System.Text.Json's binding errors into "field: problem" text that reads like the validator's, in terms of
/// configuration keys rather than .NET types.
/// </summary>
internal static class JsonErrorText
{
    private const string MissingRequiredMarker = "was missing required properties including: ";
    private const string ConversionMarker = "could not be converted to ";
    private const string NullMarker = "doesn't allow setting null values";

    public static string Describe(JsonException exception)
    {
        var field = exception.Path is { Length: > 0 } path ? path.TrimStart('$').TrimStart('.') : "";
        var problem = DescribeProblem(exception.Message);
        return field.Length == 0 ? problem : $"{field}: {problem}";
    }

    private static string DescribeProblem(string message)
    {
        var missing = message.IndexOf(MissingRequiredMarker, StringComparison.Ordinal);
        if (missing >= 0)
        {
            var keys = message[(missing + MissingRequiredMarker.Length)..].TrimEnd('.');
            return $"missing required key(s) {keys}";
        }

        var conversion = message.IndexOf(ConversionMarker, StringComparison.Ordinal);
        if (conversion >= 0)
        {
            var rest = message[(conversion + ConversionMarker.Length)..];
            var end = rest.IndexOf(". ", StringComparison.Ordinal);
            var typeName = (end >= 0 ? rest[..end] : rest).TrimEnd('.');
            return $"wrong value type, expected {DescribeExpected(typeName)}";
        }

        if (message.Contains(NullMarker, StringComparison.Ordinal))
        {
            return "null is not allowed here";
        }

        // Syntax errors and anything else: keep STJ's text minus its " Path: … | LineNumber: …" tail, which the
        // field prefix replaces (line numbers of a TOML document converted to JSON would point nowhere).
        var pathSuffix = message.IndexOf(" Path: ", StringComparison.Ordinal);
        return pathSuffix >= 0 ? message[..pathSuffix] : message;
    }

    private static string DescribeExpected(string typeName) => typeName switch
    {
        "System.String" => "a string",
        "System.Boolean" => "true or false",
        "System.Byte" => "an integer from 0 to 255",
        "System.UInt32" => "an integer from 0 to 4294967295",
        "System.UInt64" => "a non-negative integer",
        _ when typeName.StartsWith("System.Collections", StringComparison.Ordinal) => "an array or table",
        _ when typeName.StartsWith("Nydus.", StringComparison.Ordinal) => "a table (JSON object)",
        _ => typeName,
    };
}
