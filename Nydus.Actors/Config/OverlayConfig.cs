using System.Text.Json.Serialization;

namespace Nydus.Actors.Config;

/// <summary><c>overlay</c>: the writable upper layer. Both keys are required; the mount also needs them non-empty.</summary>
public sealed record OverlayConfig
{
    [JsonPropertyName("upper_dir"), JsonRequired]
    public string UpperDir { get; init; } = "";

    [JsonPropertyName("work_dir"), JsonRequired]
    public string WorkDir { get; init; } = "";
}
