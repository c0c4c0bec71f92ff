using System.Text.Json;
using System.Text.Json.Serialization;

namespace Nydus.Actors.Config;

/// <summary>
/// Writes <see cref="FsBackendType"/> in its display form; reads the display form or any API spelling, so a
/// persisted mount command and an API-shaped one both load.
/// </summary>
public sealed class FsBackendTypeJsonConverter : JsonConverter<FsBackendType>
{
    public override FsBackendType Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        if (reader.TokenType != JsonTokenType.String)
        {
            throw new JsonException($"fs_type must be a string, found {reader.TokenType}");
        }

        var text = reader.GetString();
        if (FsBackendTypes.TryParseDisplayString(text, out var type) || FsBackendTypes.TryParse(text, out type))
        {
            return type;
        }

        throw new JsonException($"only 'rafs' and 'passthrough_fs' are supported, but '{text}' was specified");
    }

    public override void Write(Utf8JsonWriter writer, FsBackendType value, JsonSerializerOptions options) =>
        writer.WriteStringValue(value.ToDisplayString());
}
