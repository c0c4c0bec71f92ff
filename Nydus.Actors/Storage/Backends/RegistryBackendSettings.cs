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

    /// <summary>PEM files of certificates trusted besides the system's roots (<c>ca_cert_files</c>).</summary>
    public IReadOnlyList<string> CaCertFiles { get; init; } = [];

    /// <summary>A forward proxy in front of the registry (Dragonfly's peer proxy), or null.</summary>
    public RegistryProxySettings? Proxy { get; init; }

    /// <summary>Mirrors tried in order before the registry.</summary>
    public IReadOnlyList<MirrorConfig> Mirrors { get; init; } = [];

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
        CaCertFiles = config.CaCertFiles,
        Proxy = string.IsNullOrEmpty(config.Proxy.Url) ? null : new RegistryProxySettings
        {
            Url = new Uri(config.Proxy.Url),
            PingUrl = string.IsNullOrEmpty(config.Proxy.PingUrl) ? null : new Uri(config.Proxy.PingUrl),
            Fallback = config.Proxy.Fallback,
            CheckInterval = TimeSpan.FromSeconds(Math.Max(1, config.Proxy.CheckInterval)),
            CheckPauseElapsed = TimeSpan.FromSeconds(config.Proxy.CheckPauseElapsed),
            UseHttp = config.Proxy.UseHttp,
        },
        Mirrors = config.Mirrors,
    };

    public override string ToString() =>
        $"registry {Scheme}://{Host}/{Repo} (auth {(Auth is null ? "none" : "set")}, token " +
        $"{(RegistryToken is null ? "none" : "set")}, timeout {Timeout.TotalSeconds}s, retries {RetryLimit}" +
        $"{(Proxy is null ? "" : $", proxy {Proxy.Url}")}{(Mirrors.Count == 0 ? "" : $", {Mirrors.Count} mirrors")})";
}

/// <summary>
/// Upstream's <c>proxy</c> section with units: requests go through the forward proxy at <see cref="Url"/> while it
/// is healthy; <see cref="PingUrl"/> is fetched every <see cref="CheckInterval"/> (paused after
/// <see cref="CheckPauseElapsed"/> without requests) to decide that; with <see cref="Fallback"/> a failed or
/// unhealthy proxy sends requests straight to the registry. <see cref="UseHttp"/> turns https URLs into http ones
/// for the proxy (a peer proxy that intercepts plain HTTP).
/// </summary>
public sealed record RegistryProxySettings
{
    public required Uri Url { get; init; }

    public Uri? PingUrl { get; init; }

    public bool Fallback { get; init; } = true;

    public TimeSpan CheckInterval { get; init; } = TimeSpan.FromSeconds(5);

    public TimeSpan CheckPauseElapsed { get; init; } = TimeSpan.FromSeconds(300);

    public bool UseHttp { get; init; }
}
