namespace Nydus.Actors.Storage.Backends;

/// <summary>
/// Settings of upstream's <c>localfs</c> backend: either a directory of blob files named by blob id
/// (<see cref="Dir"/>, with <see cref="AltDirs"/> searched when a blob is missing or empty there), or one
/// <see cref="BlobFile"/> that serves every blob id.
/// </summary>
public sealed record LocalFsBackendSettings
{
    public string? Dir { get; init; }

    public string? BlobFile { get; init; }

    public IReadOnlyList<string> AltDirs { get; init; } = Array.Empty<string>();
}
