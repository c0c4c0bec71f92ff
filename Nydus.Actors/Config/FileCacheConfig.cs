using System.Text.Json.Serialization;

namespace Nydus.Actors.Config;

/// <summary><c>cache.filecache</c>: cache files (and their chunk maps) under <see cref="WorkDir"/>.</summary>
public sealed record FileCacheConfig
{
    [JsonPropertyName("work_dir")]
    public string WorkDir { get; init; } = ".";

    /// <summary>Deprecated by upstream; keep false.</summary>
    [JsonPropertyName("disable_indexed_map")]
    public bool DisableIndexedMap { get; init; }

    [JsonPropertyName("enable_encryption")]
    public bool EnableEncryption { get; init; }

    /// <summary>Derive keys from content so equal chunks still deduplicate when encrypted.</summary>
    [JsonPropertyName("enable_convergent_encryption")]
    public bool EnableConvergentEncryption { get; init; }

    /// <summary>Hex form of a 32-byte key.</summary>
    [JsonPropertyName("encryption_key")]
    public string EncryptionKey { get; init; } = "";
}
