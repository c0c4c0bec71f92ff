using Nydus.Actors.Config;

namespace Nydus.Actors.Storage.Backends;

/// <summary>
/// What <see cref="RegistryBackend"/> needs from upstream's <c>backend.registry</c> section, with units made
/// explicit. <see cref="ToString"/> never prints <see cref="Auth"/> or <see cref="RegistryToken"/>: settings end up
/// in logs and error messages.
/// </summary>
public sealed record RegistryBackendSettings
{
    /// <summary><c>http</c> or <c>https</c>.</summary>
    public string Scheme { get; init; } = "https";

    /// <summary>Host and optional port, e.g. <c>registry.example.com:5000</c>.</summary>
    public required string Host { get; init; }

    /// <summary>Repository (image name), e.g. <c>library/ubuntu</c>.</summary>
    public required string Repo { get; init; }

    /// <summary>Secret: base64 of <c>user:password</c>, used for Basic auth and when asking a token service.</summary>
    public string? Auth { get; init; }

    /// <summary>Secret: a bearer token sent as is until the registry rejects it.</summary>
    public string? RegistryToken { get; init; }

    /// <summary>Accept any TLS certificate (self-signed registries).</summary>
    public bool SkipVerify { get; init; }

    /// <summary>Bound on one whole request (headers and body).</summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(5);

    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>How many times a failed request is tried again (0 = one attempt only).</summary>
    public int RetryLimit { get; init; }

    /// <summary>Delay before the first retry; doubled for each further one, capped at <see cref="MaxRetryBackoff"/>.</summary>
    public TimeSpan RetryBackoff { get; init; } = TimeSpan.FromMilliseconds(100);

    public TimeSpan MaxRetryBackoff { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>Scheme forced onto redirected blob URLs; empty keeps the redirect's own.</summary>
    public string BlobUrlScheme { get; init; } = "";

    /// <summary>Host forced onto redirected blob URLs; empty keeps the redirect's own.</summary>
    public string BlobRedirectedHost { get; init; } = "";

    /// <summary>
    /// How long a redirect target (usually a pre-signed object-store URL) is reused before asking the registry
    /// again. A failure of the target drops it earlier.
    /// </summary>
    public TimeSpan RedirectLifetime { get; init; } = TimeSpan.FromMinutes(10);

    /// <summary>Reads slower than this are logged as warnings.</summary>
    public TimeSpan SlowReadThreshold { get; init; } = TimeSpan.FromSeconds(1);

    public static RegistryBackendSettings FromConfig(RegistryConfig config) => new()
    {
        Scheme = string.IsNullOrEmpty(config.Scheme) ? "https" : config.Scheme,
        Host = config.Host,
        Repo = config.Repo,
        Auth = string.IsNullOrEmpty(config.Auth) ? null : config.Auth,
        RegistryToken = string.IsNullOrEmpty(config.RegistryToken) ? null : config.RegistryToken,
        SkipVerify = config.SkipVerify,
        Timeout = TimeSpan.FromSeconds(config.Timeout == 0 ? 5 : config.Timeout),
        ConnectTimeout = TimeSpan.FromSeconds(config.ConnectTimeout == 0 ? 5 : config.ConnectTimeout),
        RetryLimit = config.RetryLimit,
        BlobUrlScheme = config.BlobUrlScheme,
        BlobRedirectedHost = config.BlobRedirectedHost,
    };

    public override string ToString() =>
        $"registry {Scheme}://{Host}/{Repo} (auth {(Auth is null ? "none" : "set")}, token " +
        $"{(RegistryToken is null ? "none" : "set")}, timeout {Timeout.TotalSeconds}s, retries {RetryLimit})";
}
