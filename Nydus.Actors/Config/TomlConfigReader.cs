using System.Text.Json.Nodes;
using Tomlyn;
using Tomlyn.Model;

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
        var options = new TomlSerializerOptions { SourceName = sourceName };
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
        double number => JsonValue.Create(number),
        // No configuration field is a date; passing its text lets the binder report the key with a type error.
        _ => JsonValue.Create(Convert.ToString(value, System.Globalization.CultureInfo.InvariantCulture)),
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
