using System.Text.Json.Serialization;

namespace Nydus.Actors.Api;

// JSON shapes of the API, with upstream's field names (api/src/http.rs, service/src/daemon.rs).

public sealed record ApiErrorBody(
    [property: JsonPropertyName("code")] string Code,
    [property: JsonPropertyName("message")] string Message);

public sealed record BuildInfoBody(
    [property: JsonPropertyName("package_ver")] string PackageVer,
    [property: JsonPropertyName("git_commit")] string GitCommit,
    [property: JsonPropertyName("build_time")] string BuildTime,
    [property: JsonPropertyName("profile")] string Profile,
    // Upstream reports its compiler here; a .NET build reports its runtime.
    [property: JsonPropertyName("rustc")] string Rustc);

public sealed record FsBackendDescriptorBody(
    [property: JsonPropertyName("backend_type")] string BackendType,
    [property: JsonPropertyName("mountpoint")] string Mountpoint,
    [property: JsonPropertyName("mounted_time")] string MountedTime,
    [property: JsonPropertyName("config")] System.Text.Json.Nodes.JsonNode? Config);

public sealed record DaemonInfoBody(
    [property: JsonPropertyName("version")] BuildInfoBody Version,
    [property: JsonPropertyName("id")] string? Id,
    [property: JsonPropertyName("supervisor")] string? Supervisor,
    [property: JsonPropertyName("state")] string State,
    [property: JsonPropertyName("backend_collection")] IReadOnlyDictionary<string, FsBackendDescriptorBody>? BackendCollection);

public sealed record ErrorEventsBody(
    [property: JsonPropertyName("max_errors")] int MaxErrors,
    [property: JsonPropertyName("total_errors")] long TotalErrors,
    [property: JsonPropertyName("max_size")] int MaxSize,
    [property: JsonPropertyName("total_size")] long TotalSize,
    [property: JsonPropertyName("errors")] IReadOnlyList<string> Errors);

public sealed record DaemonConfigBody([property: JsonPropertyName("log_level")] string? LogLevel);
