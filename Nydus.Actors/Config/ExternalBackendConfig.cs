using System.Text.Json.Serialization;

namespace Nydus.Actors.Config;

/// <summary>
/// One entry of <c>external_backends</c>: items merged into the external-blob backend config the image carries.
/// All three keys are required, and the maps hold strings only.
/// </summary>
public sealed record ExternalBackendConfig
{
    /// <summary>Identifies which external backend of the image this entry patches.</summary>
    [JsonPropertyName("patch"), JsonRequired]
    public IReadOnlyDictionary<string, string> Patch { get; init; } = new Dictionary<string, string>();

    [JsonPropertyName("type"), JsonRequired]
    public string Kind { get; init; } = "";

    [JsonPropertyName("config"), JsonRequired]
    public IReadOnlyDictionary<string, string> Config { get; init; } = new Dictionary<string, string>();
}
