using System.Text.Json.Serialization;

namespace Nydus.Actors.Config;

/// <summary><c>backend.localfs</c>: blobs are plain files, either one <see cref="BlobFile"/> or named by id in <see cref="Dir"/>.</summary>
public sealed record LocalFsConfig
{
    [JsonPropertyName("blob_file")]
    public string BlobFile { get; init; } = "";

    /// <summary>Directory holding blob files; used when <see cref="BlobFile"/> is empty.</summary>
    [JsonPropertyName("dir")]
    public string Dir { get; init; } = "";

    /// <summary>Further directories searched for a blob that is not in <see cref="Dir"/>.</summary>
    [JsonPropertyName("alt_dirs")]
    public IReadOnlyList<string> AltDirs { get; init; } = [];
}
