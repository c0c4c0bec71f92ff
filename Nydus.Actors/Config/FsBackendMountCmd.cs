using System.Text.Json;
using System.Text.Json.Serialization;

namespace Nydus.Actors.Config;

/// <summary>
/// A request to attach a filesystem at a virtual mountpoint (upstream <c>FsBackendMountCmd</c>): built from the command
/// line (<c>--bootstrap</c> + <c>--config</c>/<c>--localfs-dir</c>) or from <c>POST/PUT /api/v1/mount</c>, and kept so
/// a takeover can rebuild the mount. <see cref="Config"/> is the configuration text as given, parsed at mount time.
/// </summary>
/// <remarks>JSON names follow the API body (<c>source</c>, <c>fs_type</c>, <c>config</c>, <c>prefetch_files</c>) plus <c>mountpoint</c>.</remarks>
public sealed record FsBackendMountCmd
{
    [JsonPropertyName("fs_type"), JsonRequired]
    public FsBackendType FsType { get; init; }

    /// <summary>RAFS: the bootstrap file; passthrough: the directory to share.</summary>
    [JsonPropertyName("source"), JsonRequired]
    public string Source { get; init; } = "";

    /// <summary>The whole configuration document as text (JSON V2, TOML V2 or legacy JSON).</summary>
    [JsonPropertyName("config"), JsonRequired]
    public string Config { get; init; } = "";

    /// <summary>Virtual path inside the daemon's FUSE tree; see <see cref="VirtualMountpoint"/>.</summary>
    [JsonPropertyName("mountpoint"), JsonRequired]
    public string Mountpoint { get; init; } = VirtualMountpoint.Root;

    /// <summary>Absolute paths to prefetch; null means "use the image's own prefetch table".</summary>
    [JsonPropertyName("prefetch_files")]
    public IReadOnlyList<string>? PrefetchFiles { get; init; }

    /// <summary>
    /// Builds a command from an API mount body <c>{"source","fs_type","config","prefetch_files"?}</c> and the
    /// <c>mountpoint</c> query value. As upstream, <c>fs_type</c> may be absent and then fails as <c>""</c>;
    /// <c>source</c> and <c>config</c> are required. The config text itself is not parsed here.
    /// </summary>
    public static FsBackendMountCmd FromApiRequest(string body, string mountpoint)
    {
        ArgumentNullException.ThrowIfNull(body);

        ApiMountBody request;
        try
        {
            request = JsonSerializer.Deserialize<ApiMountBody>(body, ConfigJson.Options)
                ?? throw new ConfigException(ConfigErrorKind.Malformed, "mount request body must be a JSON object");
        }
        catch (JsonException e)
        {
            throw new ConfigException(ConfigErrorKind.Malformed, $"mount request body: {JsonErrorText.Describe(e)}", e);
        }

        if (PathText.Problem(request.Source) is { } problem)
        {
            throw new ConfigException(ConfigErrorKind.MissingForMount, $"source: {PathText.Quote(request.Source)} is not a usable path: {problem}");
        }

        if (request.Config.Length > NydusConfigLoader.MaxFileSize)
        {
            throw new ConfigException(ConfigErrorKind.TooLarge,
                $"config: {request.Config.Length} characters, more than the {NydusConfigLoader.MaxFileSize} a configuration may have");
        }

        return new FsBackendMountCmd
        {
            FsType = FsBackendTypes.Parse(request.FsType),
            Source = request.Source,
            Config = request.Config,
            Mountpoint = VirtualMountpoint.Validate(mountpoint),
            PrefetchFiles = PrefetchList.Validate(request.PrefetchFiles),
        };
    }

    /// <summary>The API body shape (<c>ApiMountCmd</c>): fs_type stays text until parsed.</summary>
    private sealed record ApiMountBody
    {
        [JsonPropertyName("source"), JsonRequired]
        public string Source { get; init; } = "";

        [JsonPropertyName("fs_type")]
        public string FsType { get; init; } = "";

        [JsonPropertyName("config"), JsonRequired]
        public string Config { get; init; } = "";

        [JsonPropertyName("prefetch_files")]
        public IReadOnlyList<string>? PrefetchFiles { get; init; }
    }
}
