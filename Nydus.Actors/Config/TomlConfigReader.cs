using System.Text.Json.Nodes;
using Tomlyn;
using Tomlyn.Model;
using Tomlyn.Parsing;

namespace Nydus.Actors.Config;

/// <summary>
/// Reads the TOML flavour of <see cref="ConfigV2"/> (upstream's <c>misc/configs/nydusd-config-v2.toml</c>) by turning the
/// TOML tree into a JSON tree, so one set of bindings, defaults and required keys serves both formats.
/// </summary>
internal static class TomlConfigReader
{
    /// <summary>Parses <paramref name="text"/> as TOML; throws <see cref="TomlException"/> on bad syntax.</summary>
    public static JsonObject ToJson(string text, string sourceName)
    {
        // TOML forbids redefining a key; upstream's toml crate rejects it, so do not let the last one win.
        var options = new TomlSerializerOptions { SourceName = sourceName, DuplicateKeyHandling = TomlDuplicateKeyHandling.Error };

        // The model reader lets a redefined key win silently; the validating syntax parser reports it (and any
        // other TOML rule broken) as a TomlException.
        SyntaxParser.ParseStrict(text, sourceName, true);
        var table = TomlSerializer.Deserialize<TomlTable>(text, options)
            ?? throw new ConfigException(ConfigErrorKind.Malformed, $"{sourceName}: empty TOML document");
        return ConvertTable(table);
    }

    private static JsonObject ConvertTable(TomlTable table)
    {
        var result = new JsonObject();
        foreach (var (key, value) in table)
        {
            result[key] = ConvertValue(value);
        }

        return result;
    }

    private static JsonNode? ConvertValue(object? value) => value switch
    {
        null => null,
        TomlTable table => ConvertTable(table),
        TomlTableArray tables => ConvertTables(tables),
        TomlArray array => ConvertArray(array),
        string text => JsonValue.Create(text),
        bool flag => JsonValue.Create(flag),
        long integer => JsonValue.Create(integer),
        _ => Unbindable(value),
    };

    /// <summary>
    /// No configuration field is a float or a date. Such a value becomes an object, which fails to bind wherever
    /// it lands with the key named, as serde's TOML reader fails; a plain number or string could slip into an integer
    /// (<c>2.0</c>) or string field, and NaN has no JSON form at all.
    /// </summary>
    private static JsonObject Unbindable(object value) => new()
    {
        ["toml_value"] = Convert.ToString(value, System.Globalization.CultureInfo.InvariantCulture),
    };

    private static JsonArray ConvertTables(TomlTableArray tables)
    {
        var result = new JsonArray();
        foreach (var table in tables)
        {
            result.Add(ConvertTable(table));
        }

        return result;
    }

    private static JsonArray ConvertArray(TomlArray array)
    {
        var result = new JsonArray();
        foreach (var item in array)
        {
            result.Add(ConvertValue(item));
        }

        return result;
    }
}
