using System.Text.Json.Serialization;

namespace Nydus.Actors.Config;

/// <summary>
/// The kinds of filesystem a virtual mount can hold. Parsed from the API/CLI spelling with
/// <see cref="FsBackendTypes.Parse"/>; shown (and written to JSON) as <c>Rafs</c>/<c>PassthroughFs</c>.
/// </summary>
[JsonConverter(typeof(FsBackendTypeJsonConverter))]
public enum FsBackendType
{
    /// <summary>A RAFS (nydus) image: bootstrap plus blobs.</summary>
    Rafs,

    /// <summary>A host directory shared as is.</summary>
    PassthroughFs,
}
