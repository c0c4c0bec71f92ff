using System.Text.Json.Serialization;

namespace Nydus.Actors.Config;

/// <summary><c>cache.fscache</c>: the kernel's cachefiles on-demand mode keeps the data; nydusd only fills it.</summary>
public sealed record FsCacheConfig
{
    [JsonPropertyName("work_dir")]
    public string WorkDir { get; init; } = ".";
}
