using System.Text.Json;

namespace Nydus.Actors.Config;

/// <summary>
/// The JSON settings that make System.Text.Json read configuration the way upstream's serde does, and the
/// renderings of a <see cref="ConfigV2"/> for the mount command text and for API output.
/// </summary>
public static class ConfigJson
{
    /// <summary>
    /// Strict like serde_json: exact-case names, no comments or trailing commas, no numbers in strings,
    /// <c>null</c> only where upstream has an <c>Option</c>, duplicate keys rejected; unknown keys ignored.
    /// </summary>
    public static JsonSerializerOptions Options { get; } = CreateOptions();

    /// <summary>The complete document, secrets included: what upstream passes on after applying <c>IMAGE_PULL_AUTH</c>.</summary>
    public static string Serialize(ConfigV2 config) => JsonSerializer.Serialize(config, Options);

    /// <summary>The document for API output (backend descriptors): credentials blanked, see <see cref="ConfigV2.WithoutSecrets"/>.</summary>
    public static string SerializeWithoutSecrets(ConfigV2 config) => JsonSerializer.Serialize(config.WithoutSecrets(), Options);

    private static JsonSerializerOptions CreateOptions()
    {
        var options = new JsonSerializerOptions
        {
            RespectNullableAnnotations = true,
            AllowDuplicateProperties = false,
        };
        options.MakeReadOnly(populateMissingResolver: true);
        return options;
    }
}
