using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;

namespace Nydus.Actors.Storage.Backends;

/// <summary>
/// Chooses the <c>Authorization</c> header for registry requests and runs the Docker token flow: a 401 with a
/// Bearer challenge sends us to the challenge's realm (with Basic credentials when <c>auth</c> is configured) for a
/// token that is then cached until shortly before its <c>expires_in</c>. A Basic challenge switches to sending the
/// configured credentials on every request. Thread-safe; one token fetch runs at a time so that many workers that
/// hit the same 401 cause a single request to the token service.
/// Credentials and tokens are only ever put into headers, never into messages.
/// <para>
/// Credentials can be renewed while the backend serves (<see cref="RegistryCredentials"/>, upstream's
/// <c>registry_auth</c> of <c>PUT /api/v1/config</c>): before each request the version is compared; a change
/// replaces the Basic header and makes a cached token due, so the next request fetches a token with the new
/// credentials (upstream refreshes it at once the same way). A token fetched with the old credentials that arrives
/// after a renewal is not kept.
/// </para>
/// </summary>
internal sealed class RegistryAuthenticator
{
    /// <summary>Docker's token spec: a token without <c>expires_in</c> lives 60 seconds.</summary>
    private static readonly TimeSpan DefaultTokenLifetime = TimeSpan.FromSeconds(60);

    private readonly RegistryBackendSettings _settings;
    private readonly HttpClient _http;
    private readonly SemaphoreSlim _tokenFetch = new(1, 1);
    private readonly object _stateLock = new();
    private readonly RegistryCredentials _credentials;
    private long _credentialsVersion;
    private AuthenticationHeaderValue? _basic;
    private AuthenticationHeaderValue? _bearer;
    private long _bearerRefreshAt;
    private RegistryAuthChallenge? _bearerChallenge;
    private bool _useBasic;
    private bool _configuredTokenRejected;
    private long _tokenFetches;

    public RegistryAuthenticator(RegistryBackendSettings settings, HttpClient http, RegistryCredentials credentials)
    {
        _settings = settings;
        _http = http;
        _credentials = credentials;
        (string? auth, _credentialsVersion) = credentials.Current;
        _basic = auth is null ? null : new AuthenticationHeaderValue("Basic", auth);
    }

    /// <summary>How many tokens were fetched from a token service (for tests and metrics).</summary>
    public long TokenFetches => Interlocked.Read(ref _tokenFetches);

    /// <summary>The header for the next registry request, renewing an expired token first.</summary>
    public async ValueTask<AuthenticationHeaderValue?> GetHeaderAsync(CancellationToken cancellation)
    {
        // Twice at most: a token fetched while the credentials were renewed is dropped and fetched again.
        for (int attempt = 0; ; attempt++)
        {
            RegistryAuthChallenge? renew = null;
            lock (_stateLock)
            {
                TakeRenewedCredentials();
                if (_bearer is not null)
                {
                    if (Stopwatch.GetTimestamp() < _bearerRefreshAt || attempt == 2)
                    {
                        return _bearer;
                    }

                    renew = _bearerChallenge;
                }
                else if (_useBasic)
                {
                    return _basic;
                }
                else if (_settings.RegistryToken is not null && !_configuredTokenRejected)
                {
                    return new AuthenticationHeaderValue("Bearer", _settings.RegistryToken);
                }
            }

            if (renew is null)
            {
                return null;
            }

            await FetchTokenAsync(renew, staleHeader: null, cancellation).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Picks up renewed credentials (caller holds <see cref="_stateLock"/>): a new Basic header, and a cached token
    /// made due so it is fetched again with them. A refused Basic header is tried again with the new ones.
    /// </summary>
    private void TakeRenewedCredentials()
    {
        if (_credentials.Version == _credentialsVersion)
        {
            return;
        }

        (string? auth, _credentialsVersion) = _credentials.Current;
        _basic = auth is null ? null : new AuthenticationHeaderValue("Basic", auth);
        if (_bearer is not null)
        {
            _bearerRefreshAt = 0;
        }

        if (_basic is null)
        {
            _useBasic = false;
        }
    }

    /// <summary>
    /// Reacts to a 401 from the registry to a request that carried <paramref name="sent"/>. True when there is
    /// now something new to try; false when the registry wants credentials we do not have.
    /// </summary>
    public async ValueTask<bool> HandleUnauthorizedAsync(HttpResponseMessage response, AuthenticationHeaderValue? sent,
        CancellationToken cancellation)
    {
        RegistryAuthChallenge? challenge = RegistryAuthChallenge.FromHeaders(response.Headers.WwwAuthenticate);
        if (challenge is null)
        {
            return false;
        }

        if (challenge.IsBasic)
        {
            lock (_stateLock)
            {
                if (_basic is null || (_useBasic && ReferenceEquals(sent, _basic)))
                {
                    return false;
                }

                _useBasic = true;
                return true;
            }
        }

        if (!challenge.IsBearer || string.IsNullOrEmpty(challenge.Realm))
        {
            return false;
        }

        lock (_stateLock)
        {
            if (sent is not null && _settings.RegistryToken is not null && sent.Parameter == _settings.RegistryToken)
            {
                // A token from the config is not renewable: once refused, fall back to the token service.
                _configuredTokenRejected = true;
            }
        }

        return await FetchTokenAsync(challenge, sent, cancellation).ConfigureAwait(false);
    }

    private async ValueTask<bool> FetchTokenAsync(RegistryAuthChallenge challenge, AuthenticationHeaderValue? staleHeader,
        CancellationToken cancellation)
    {
        await _tokenFetch.WaitAsync(cancellation).ConfigureAwait(false);
        try
        {
            lock (_stateLock)
            {
                // Another worker renewed the token while we waited: use theirs instead of asking again.
                TakeRenewedCredentials();
                if (_bearer is not null && !ReferenceEquals(_bearer, staleHeader)
                    && Stopwatch.GetTimestamp() < _bearerRefreshAt)
                {
                    return true;
                }
            }

            using var request = new HttpRequestMessage(HttpMethod.Get, BuildTokenUri(challenge));
            long version;
            lock (_stateLock)
            {
                TakeRenewedCredentials();
                version = _credentialsVersion;
                request.Headers.Authorization = _basic;
            }

            using HttpResponseMessage response = await _http
                .SendAsync(request, HttpCompletionOption.ResponseContentRead, cancellation).ConfigureAwait(false);
            Interlocked.Increment(ref _tokenFetches);
            if (response.StatusCode is HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden)
            {
                throw new StorageException(StorageErrorKind.AccessDenied,
                    $"token service {DescribeRealm(challenge)} refused the configured credentials " +
                    $"({(int)response.StatusCode}) for registry {_settings.Host}/{_settings.Repo}");
            }

            if (!response.IsSuccessStatusCode)
            {
                throw new StorageException(StorageErrorKind.BackendUnavailable,
                    $"token service {DescribeRealm(challenge)} answered {(int)response.StatusCode} for registry " +
                    $"{_settings.Host}/{_settings.Repo}");
            }

            string json = await response.Content.ReadAsStringAsync(cancellation).ConfigureAwait(false);
            (string token, TimeSpan lifetime) = ParseTokenResponse(json, challenge);
            lock (_stateLock)
            {
                if (_credentials.Version != version)
                {
                    // Renewed while this token was on its way: it was granted to the old credentials. Make the
                    // cached token due, so the caller's retry fetches one with the new credentials.
                    _bearerRefreshAt = 0;
                    return true;
                }

                _bearer = new AuthenticationHeaderValue("Bearer", token);
                _bearerChallenge = challenge;
                // Renew a little before the service's expiry so a token never dies on the way to the registry.
                TimeSpan margin = TimeSpan.FromTicks(Math.Min(lifetime.Ticks / 10, TimeSpan.FromSeconds(30).Ticks));
                _bearerRefreshAt = Stopwatch.GetTimestamp() +
                    (long)((lifetime - margin).TotalSeconds * Stopwatch.Frequency);
            }

            return true;
        }
        finally
        {
            _tokenFetch.Release();
        }
    }

    private Uri BuildTokenUri(RegistryAuthChallenge challenge)
    {
        string scope = challenge.Scope ?? $"repository:{_settings.Repo}:pull";
        var builder = new UriBuilder(challenge.Realm!);
        string query = builder.Query.TrimStart('?');
        if (!string.IsNullOrEmpty(challenge.Service))
        {
            query = Append(query, "service", challenge.Service);
        }

        query = Append(query, "scope", scope);
        builder.Query = query;
        return builder.Uri;

        static string Append(string query, string key, string value) =>
            (query.Length == 0 ? "" : query + "&") + key + "=" + Uri.EscapeDataString(value);
    }

    private static (string Token, TimeSpan Lifetime) ParseTokenResponse(string json, RegistryAuthChallenge challenge)
    {
        try
        {
            using JsonDocument document = JsonDocument.Parse(json);
            JsonElement root = document.RootElement;
            string? token = null;
            if (root.TryGetProperty("token", out JsonElement t) && t.ValueKind == JsonValueKind.String)
            {
                token = t.GetString();
            }

            if (string.IsNullOrEmpty(token) && root.TryGetProperty("access_token", out JsonElement a)
                && a.ValueKind == JsonValueKind.String)
            {
                token = a.GetString();
            }

            if (string.IsNullOrEmpty(token))
            {
                throw new StorageException(StorageErrorKind.BadResponse,
                    $"token service {DescribeRealm(challenge)} answered without a token or access_token");
            }

            TimeSpan lifetime = DefaultTokenLifetime;
            if (root.TryGetProperty("expires_in", out JsonElement e) && e.ValueKind == JsonValueKind.Number
                && e.TryGetInt64(out long seconds) && seconds > 0)
            {
                lifetime = TimeSpan.FromSeconds(seconds);
            }

            return (token, lifetime);
        }
        catch (JsonException)
        {
            throw new StorageException(StorageErrorKind.BadResponse,
                $"token service {DescribeRealm(challenge)} answered with invalid JSON");
        }
    }

    /// <summary>The realm without its query, which could carry anything.</summary>
    private static string DescribeRealm(RegistryAuthChallenge challenge) =>
        Uri.TryCreate(challenge.Realm, UriKind.Absolute, out Uri? realm)
            ? realm.GetLeftPart(UriPartial.Path)
            : "(invalid realm)";
}
