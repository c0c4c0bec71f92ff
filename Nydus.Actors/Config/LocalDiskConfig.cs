using System.Text.Json.Serialization;

namespace Nydus.Actors.Config;

/// <summary><c>backend.localdisk</c>: blobs live on a block device (or its image file), found through its GPT.</summary>
public sealed record LocalDiskConfig
{
    [JsonPropertyName("device_path")]
    public string DevicePath { get; init; } = "";

    /// <summary>Do not discover blobs by scanning the GPT (deprecated layouts).</summary>
    [JsonPropertyName("disable_gpt")]
    public bool DisableGpt { get; init; }
}
