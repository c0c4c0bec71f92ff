using System.Buffers;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Security;
using Serilog;

namespace Nydus.Actors.Storage.Backends;

/// <summary>
/// Upstream's <c>registry</c> backend: blobs of an OCI distribution registry, read with HTTP Range requests on
/// <c>/v2/&lt;repo&gt;/blobs/sha256:&lt;blob id&gt;</c>.
/// <para>
/// One <see cref="SocketsHttpHandler"/> keeps a pool of connections for all FUSE workers. Every attempt is bounded
/// by <see cref="RegistryBackendSettings.Timeout"/>; failures that may pass (no connection, timeout, 5xx,
/// truncated body) are tried again <see cref="RegistryBackendSettings.RetryLimit"/> times with doubling backoff,
/// while answers that will not change (404, refused credentials, range beyond the blob) fail at once.
/// </para>
/// <para>
/// Registries usually answer a blob GET with a redirect to object storage. Redirects are followed by hand (not by
/// the handler) so that the target is remembered per blob and reused without asking the registry again, is
/// never sent the registry's credentials, and is dropped and resolved anew when it fails or gets old.
/// </para>
/// <para>
/// <see cref="IBlobBackend"/> is synchronous because FUSE workers are dedicated threads; the HTTP work is
/// asynchronous underneath and the caller's thread waits for it.
/// </para>
/// <para>
/// Routes, as upstream's connection.rs: a request for the registry tries the configured mirrors first
/// (<see cref="RegistryMirror"/>), then the registry; every blob request (mirror, registry, redirect target) goes
/// through the <c>proxy</c> while it is healthy, and straight to its target when the proxy fails or is unhealthy and
/// <c>fallback</c> is on (<see cref="RegistryProxy"/>). Token requests never use proxy or mirrors. TLS trust is
/// <see cref="RegistryTls"/>'s. Credentials can be renewed while serving (<see cref="Credentials"/>).
/// </para>
/// </summary>
public sealed class RegistryBackend : IBlobBackend
{
    private const int MaxRedirects = 5;

    private static readonly ILogger Log = Serilog.Log.ForContext<RegistryBackend>();

    private readonly RegistryBackendSettings _settings;
    private readonly HttpClient _http;
    private readonly RegistryAuthenticator _auth;
    /// <summary>Switched once from https to http when <c>skip_verify</c> allows it and the registry speaks no TLS.</summary>
    private string _blobUrlPrefix;
    private readonly ConcurrentDictionary<string, long> _sizes = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, RedirectTarget> _redirects = new(StringComparer.Ordinal);
    private readonly RegistryProxy? _proxy;
    private readonly RegistryMirror[] _mirrors;
    private long _registryRequests;

    public RegistryBackend(RegistryBackendSettings settings, BackendMetrics? metrics = null)
    {
        if (settings.Scheme is not ("http" or "https"))
        {
            throw new ArgumentException($"registry scheme must be http or https, not \"{settings.Scheme}\"",
                nameof(settings));
        }

        if (string.IsNullOrEmpty(settings.Host) || string.IsNullOrEmpty(settings.Repo))
        {
            throw new ArgumentException("registry backend needs host and repo", nameof(settings));
        }

        _settings = settings;
        Metrics = metrics ?? new BackendMetrics();
        Credentials = new RegistryCredentials(settings.Auth);
        SslClientAuthenticationOptions? tls = RegistryTls.Options(settings);
        _mirrors = settings.Mirrors.Select(m => new RegistryMirror(m)).ToArray();
        // Proxies come from the backend's own proxy section (P2P), never from the environment.
        _http = CreateClient(settings, tls, proxy: null);
        if (settings.Proxy is { } proxy)
        {
            _proxy = new RegistryProxy(proxy, CreateClient(settings, tls, new WebProxy(proxy.Url)), _http,
                settings.ConnectTimeout);
        }

        _auth = new RegistryAuthenticator(settings, _http, Credentials);
        _blobUrlPrefix = $"{settings.Scheme}://{settings.Host}/v2/{settings.Repo.Trim('/')}/blobs/sha256:";
    }

    public BackendMetrics Metrics { get; }

    /// <summary>The registry_auth in use, renewable at run time (<c>PUT /api/v1/config</c>).</summary>
    public RegistryCredentials Credentials { get; }

    /// <summary>Whether requests go through the configured proxy now (false without one).</summary>
    public bool ProxyHealthy => _proxy?.Healthy ?? false;

    private static HttpClient CreateClient(RegistryBackendSettings settings, SslClientAuthenticationOptions? tls,
        IWebProxy? proxy)
    {
        var handler = new SocketsHttpHandler
        {
            ConnectTimeout = settings.ConnectTimeout,
            AllowAutoRedirect = false,
            AutomaticDecompression = DecompressionMethods.None,
            UseProxy = proxy is not null,
            Proxy = proxy,
            UseCookies = false,
            PooledConnectionIdleTimeout = TimeSpan.FromSeconds(60),
            // Recycle connections now and then so DNS changes of the registry or object store are picked up.
            PooledConnectionLifetime = TimeSpan.FromMinutes(5),
        };
        if (tls is not null)
        {
            handler.SslOptions = tls;
        }

        // Each attempt carries its own deadline, so the client-wide one is off.
        return new HttpClient(handler, disposeHandler: true) { Timeout = System.Threading.Timeout.InfiniteTimeSpan };
    }

    /// <summary>Requests sent to the registry itself (not to redirect targets or the token service).</summary>
    public long RegistryRequests => Interlocked.Read(ref _registryRequests);

    /// <summary>Tokens fetched from the registry's token service so far.</summary>
    public long TokenFetches => _auth.TokenFetches;

    public long GetBlobSize(string blobId)
    {
        CheckBlobId(blobId);
        if (_sizes.TryGetValue(blobId, out long size))
        {
            return size;
        }

        RunWithRetries(blobId, offset: 0, buffer: default, sizeOnly: true, CancellationToken.None);
        return _sizes[blobId];
    }

    public void Read(string blobId, long offset, Span<byte> destination) =>
        Read(blobId, offset, destination, CancellationToken.None);

    public void Read(string blobId, long offset, Span<byte> destination, CancellationToken cancellation)
    {
        CheckBlobId(blobId);
        if (destination.IsEmpty)
        {
            return;
        }

        byte[] buffer = ArrayPool<byte>.Shared.Rent(destination.Length);
        try
        {
            RunWithRetries(blobId, offset, buffer.AsMemory(0, destination.Length), sizeOnly: false, cancellation);
            buffer.AsSpan(0, destination.Length).CopyTo(destination);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    public void Dispose()
    {
        _proxy?.Dispose();
        _http.Dispose();
    }

    private void RunWithRetries(string blobId, long offset, Memory<byte> buffer, bool sizeOnly,
        CancellationToken cancellation)
    {
        long started = Stopwatch.GetTimestamp();
        bool failed = true, cancelled = false;
        try
        {
            RunWithRetriesAsync(blobId, offset, buffer, sizeOnly, cancellation).GetAwaiter().GetResult();
            failed = false;
        }
        catch (OperationCanceledException) when (cancellation.IsCancellationRequested)
        {
            // The caller gave up (a read-ahead stopped at unmount): not a backend error, nothing read.
            cancelled = true;
            throw;
        }
        finally
        {
            if (!sizeOnly && !cancelled)
            {
                Metrics.RecordRead(started, buffer.Length, failed);
                TimeSpan elapsed = Stopwatch.GetElapsedTime(started);
                if (!failed && elapsed > _settings.SlowReadThreshold)
                {
                    Log.Warning("Slow registry read of {Bytes} bytes at {Offset} from blob {BlobId}: {ElapsedMs} ms",
                        buffer.Length, offset, blobId, (long)elapsed.TotalMilliseconds);
                }
            }
        }
    }

    /// <remarks>
    /// <paramref name="cancellation"/> (the caller giving up, e.g. a read-ahead stopped at unmount) ends the read with
    /// <see cref="OperationCanceledException"/> at once and is never retried; each attempt's own deadline is a
    /// <see cref="StorageException"/> like any other failure.
    /// </remarks>
    private async Task RunWithRetriesAsync(string blobId, long offset, Memory<byte> buffer, bool sizeOnly,
        CancellationToken cancellation)
    {
        TimeSpan backoff = _settings.RetryBackoff;
        for (int attempt = 0; ; attempt++)
        {
            using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
            deadline.CancelAfter(_settings.Timeout);
            try
            {
                if (sizeOnly)
                {
                    await FetchSizeAsync(blobId, deadline.Token).ConfigureAwait(false);
                }
                else
                {
                    await FetchRangeAsync(blobId, offset, buffer, deadline.Token).ConfigureAwait(false);
                }

                return;
            }
            catch (Exception) when (cancellation.IsCancellationRequested)
            {
                throw new OperationCanceledException($"read of blob {blobId} cancelled", cancellation);
            }
            catch (Exception e) when (Classify(e, blobId, deadline) is var failure && IsRetryable(failure.Kind)
                                      && attempt < _settings.RetryLimit)
            {
                Log.Warning("Registry request for blob {BlobId} failed ({Kind}: {Reason}); retry {Attempt} of {RetryLimit} in {DelayMs} ms",
                    blobId, failure.Kind, failure.Message, attempt + 1, _settings.RetryLimit, (long)backoff.TotalMilliseconds);
                await Task.Delay(backoff, cancellation).ConfigureAwait(false);
                backoff = TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, _settings.MaxRetryBackoff.Ticks));
            }
            catch (Exception e)
            {
                StorageException failure = Classify(e, blobId, deadline);
                if (ReferenceEquals(failure, e))
                {
                    throw;
                }

                throw failure;
            }
        }
    }

    /// <summary>Turns whatever an attempt threw into the <see cref="StorageException"/> the caller sees.</summary>
    private StorageException Classify(Exception e, string blobId, CancellationTokenSource deadline) => e switch
    {
        StorageException storage => storage,
        OperationCanceledException when deadline.IsCancellationRequested => new StorageException(
            StorageErrorKind.BackendUnavailable,
            $"registry {_settings.Host} did not answer for blob {blobId} within {_settings.Timeout.TotalSeconds} s", e),
        HttpRequestException http => new StorageException(StorageErrorKind.BackendUnavailable,
            $"cannot fetch blob {blobId} from registry {_settings.Host}: {http.Message}", e),
        IOException io => new StorageException(StorageErrorKind.BadResponse,
            $"response for blob {blobId} from registry {_settings.Host} broke off: {io.Message}", e),
        _ => new StorageException(StorageErrorKind.BadResponse,
            $"unexpected failure fetching blob {blobId} from registry {_settings.Host}: {e.GetType().Name}", e),
    };

    private static bool IsRetryable(StorageErrorKind kind) =>
        kind is StorageErrorKind.BackendUnavailable or StorageErrorKind.BadResponse;

    private async Task FetchSizeAsync(string blobId, CancellationToken cancellation)
    {
        using HttpResponseMessage head = await SendToRegistryAsync(HttpMethod.Head, blobId, 0, 0, cancellation)
            .ConfigureAwait(false);
        if (head.StatusCode == HttpStatusCode.OK && head.Content.Headers.ContentLength is long length)
        {
            _sizes[blobId] = length;
            return;
        }

        if (!IsRedirect(head.StatusCode))
        {
            ThrowForStatus(head, blobId, fromRegistry: true);
        }

        // A HEAD on a pre-signed GET URL fails its signature check: ask for one byte and read Content-Range instead.
        byte[] probe = new byte[1];
        await FetchRangeAsync(blobId, 0, probe, cancellation).ConfigureAwait(false);
        if (!_sizes.ContainsKey(blobId))
        {
            throw new StorageException(StorageErrorKind.BadResponse,
                $"registry {_settings.Host} gave no size for blob {blobId} (no Content-Length or Content-Range)");
        }
    }

    private async Task FetchRangeAsync(string blobId, long offset, Memory<byte> buffer, CancellationToken cancellation)
    {
        if (_redirects.TryGetValue(blobId, out RedirectTarget? cached))
        {
            if (Stopwatch.GetTimestamp() < cached.ExpiresAt)
            {
                try
                {
                    using HttpResponseMessage direct = await SendAsync(HttpMethod.Get, cached.Uri, offset, buffer.Length,
                        authorization: null, cancellation).ConfigureAwait(false);
                    ThrowForStatus(direct, blobId, fromRegistry: false);
                    await CopyBodyAsync(direct, blobId, offset, buffer, cancellation).ConfigureAwait(false);
                    return;
                }
                catch (Exception e) when (e is StorageException { Kind: not StorageErrorKind.BlobTooShort }
                                              or HttpRequestException or IOException)
                {
                    Log.Debug("Redirect target of blob {BlobId} failed, resolving it again: {Reason}", blobId, e.Message);
                }
            }

            _redirects.TryRemove(new KeyValuePair<string, RedirectTarget>(blobId, cached));
        }

        HttpResponseMessage response = await SendToRegistryAsync(HttpMethod.Get, blobId, offset, buffer.Length,
            cancellation).ConfigureAwait(false);
        try
        {
            for (int hops = 0; IsRedirect(response.StatusCode); hops++)
            {
                if (hops == MaxRedirects)
                {
                    throw new StorageException(StorageErrorKind.BadResponse,
                        $"more than {MaxRedirects} redirects for blob {blobId} from registry {_settings.Host}");
                }

                Uri target = ResolveRedirect(response, blobId);
                response.Dispose();
                _redirects[blobId] = new RedirectTarget(target,
                    Stopwatch.GetTimestamp() + (long)(_settings.RedirectLifetime.TotalSeconds * Stopwatch.Frequency));
                response = await SendAsync(HttpMethod.Get, target, offset, buffer.Length, authorization: null,
                    cancellation).ConfigureAwait(false);
                if (!response.IsSuccessStatusCode && !IsRedirect(response.StatusCode))
                {
                    _redirects.TryRemove(blobId, out _);
                    ThrowForStatus(response, blobId, fromRegistry: false);
                }
            }

            ThrowForStatus(response, blobId, fromRegistry: true);
            await CopyBodyAsync(response, blobId, offset, buffer, cancellation).ConfigureAwait(false);
        }
        finally
        {
            response.Dispose();
        }
    }

    /// <summary>A request to the registry with the current credentials, renewed once when it answers 401.</summary>
    private async Task<HttpResponseMessage> SendToRegistryAsync(HttpMethod method, string blobId, long offset,
        int length, CancellationToken cancellation)
    {
        var uri = new Uri(Volatile.Read(ref _blobUrlPrefix) + blobId);
        for (int round = 0; ; round++)
        {
            AuthenticationHeaderValue? authorization = await _auth.GetHeaderAsync(cancellation).ConfigureAwait(false);
            if (_mirrors.Length > 0 && await TryMirrorsAsync(method, uri, offset, length, authorization, cancellation)
                    .ConfigureAwait(false) is { } mirrored)
            {
                return mirrored;
            }

            Interlocked.Increment(ref _registryRequests);
            HttpResponseMessage response;
            try
            {
                response = await SendAsync(method, uri, offset, length, authorization, cancellation).ConfigureAwait(false);
            }
            catch (HttpRequestException e) when (_settings.SkipVerify && uri.Scheme == Uri.UriSchemeHttps
                                                 && e.HttpRequestError == HttpRequestError.SecureConnectionError)
            {
                // Upstream: skip_verify also allows falling back to plain HTTP when the TLS handshake fails.
                uri = FallBackToHttp(blobId, e);
                response = await SendAsync(method, uri, offset, length, authorization, cancellation).ConfigureAwait(false);
            }

            if (response.StatusCode != HttpStatusCode.Unauthorized)
            {
                return response;
            }

            using (response)
            {
                if (round == 0 && await _auth.HandleUnauthorizedAsync(response, authorization, cancellation)
                        .ConfigureAwait(false))
                {
                    continue;
                }

                throw new StorageException(StorageErrorKind.AccessDenied,
                    $"registry {_settings.Host} refused access to blob {blobId} of {_settings.Repo} " +
                    $"({(authorization is null ? "no credentials configured" : $"{authorization.Scheme} credentials rejected")})");
            }
        }
    }

    private Uri FallBackToHttp(string blobId, HttpRequestException e)
    {
        string http = $"http://{_settings.Host}/v2/{_settings.Repo.Trim('/')}/blobs/sha256:";
        if (Interlocked.Exchange(ref _blobUrlPrefix, http) != http)
        {
            Log.Warning("TLS to registry {Host} failed ({Reason}); skip_verify is set, so it is used over plain HTTP from now on",
                _settings.Host, e.Message);
        }

        return new Uri(http + blobId);
    }

    /// <summary>
    /// The registry request sent to each usable mirror in turn; the first answer that is not a failure (no
    /// connection, 5xx) nor a refusal (401/403/404: the mirror cannot serve it, the registry may) is the answer.
    /// Null: the registry itself must answer.
    /// </summary>
    private async Task<HttpResponseMessage?> TryMirrorsAsync(HttpMethod method, Uri uri, long offset, int length,
        AuthenticationHeaderValue? authorization, CancellationToken cancellation)
    {
        foreach (RegistryMirror mirror in _mirrors)
        {
            if (!await mirror.IsUsableAsync(_http, _settings.ConnectTimeout, cancellation).ConfigureAwait(false))
            {
                continue;
            }

            HttpResponseMessage response;
            try
            {
                response = await SendAsync(method, mirror.Rewrite(uri), offset, length,
                    mirror.AuthThrough ? authorization : null, cancellation, mirror.Headers).ConfigureAwait(false);
            }
            catch (Exception e) when (e is HttpRequestException or OperationCanceledException
                                      && !cancellation.IsCancellationRequested)
            {
                mirror.Failed(e.Message);
                continue;
            }

            int status = (int)response.StatusCode;
            if (status >= 500)
            {
                mirror.Failed($"status {status}");
                response.Dispose();
                continue;
            }

            if (response.StatusCode is HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden or HttpStatusCode.NotFound)
            {
                Log.Debug("Registry mirror {Mirror} answered {Status}; asking the next one", mirror.Host, status);
                response.Dispose();
                continue;
            }

            mirror.Succeeded();
            return response;
        }

        return null;
    }

    /// <summary>
    /// One HTTP request for blob data: through the proxy while it is healthy, else (or when it fails, with
    /// fallback) straight to <paramref name="uri"/>.
    /// </summary>
    private async Task<HttpResponseMessage> SendAsync(HttpMethod method, Uri uri, long offset, int length,
        AuthenticationHeaderValue? authorization, CancellationToken cancellation,
        IReadOnlyDictionary<string, string>? headers = null)
    {
        if (_proxy is { } proxy)
        {
            if (proxy.Healthy)
            {
                try
                {
                    HttpResponseMessage viaProxy = await proxy.Client.SendAsync(
                        NewRequest(method, proxy.Rewrite(uri), offset, length, authorization, headers),
                        HttpCompletionOption.ResponseHeadersRead, cancellation).ConfigureAwait(false);
                    if (!proxy.Fallback || (int)viaProxy.StatusCode < 500)
                    {
                        return viaProxy;
                    }

                    proxy.ReportFailure($"status {(int)viaProxy.StatusCode}");
                    viaProxy.Dispose();
                }
                catch (Exception e) when (e is HttpRequestException && proxy.Fallback)
                {
                    proxy.ReportFailure(e.Message);
                }
            }
            else if (!proxy.Fallback)
            {
                throw new StorageException(StorageErrorKind.BackendUnavailable,
                    $"proxy {proxy.Url} of registry {_settings.Host} is unhealthy and proxy.fallback is off");
            }
        }

        return await _http.SendAsync(NewRequest(method, uri, offset, length, authorization, headers),
            HttpCompletionOption.ResponseHeadersRead, cancellation).ConfigureAwait(false);
    }

    private static HttpRequestMessage NewRequest(HttpMethod method, Uri uri, long offset, int length,
        AuthenticationHeaderValue? authorization, IReadOnlyDictionary<string, string>? headers)
    {
        // Disposed with the response (HttpResponseMessage.RequestMessage is not disposed for us, but holds no resources).
        var request = new HttpRequestMessage(method, uri);
        if (length > 0)
        {
            request.Headers.Range = new RangeHeaderValue(offset, offset + length - 1);
        }

        request.Headers.Authorization = authorization;
        if (headers is not null)
        {
            foreach (var (name, value) in headers)
            {
                request.Headers.TryAddWithoutValidation(name, value);
            }
        }

        return request;
    }

    private void ThrowForStatus(HttpResponseMessage response, string blobId, bool fromRegistry)
    {
        if (response.IsSuccessStatusCode)
        {
            return;
        }

        string source = fromRegistry ? $"registry {_settings.Host}" : $"blob storage {response.RequestMessage?.RequestUri?.Host}";
        int status = (int)response.StatusCode;
        throw response.StatusCode switch
        {
            HttpStatusCode.NotFound when fromRegistry => new StorageException(StorageErrorKind.BlobNotFound,
                $"blob {blobId} not found in {_settings.Repo} on registry {_settings.Host}"),
            HttpStatusCode.RequestedRangeNotSatisfiable => new StorageException(StorageErrorKind.BlobTooShort,
                $"blob {blobId} on {source} is shorter than the requested range (416)"),
            HttpStatusCode.Forbidden or HttpStatusCode.Unauthorized when fromRegistry => new StorageException(
                StorageErrorKind.AccessDenied, $"{source} refused access to blob {blobId} ({status})"),
            // A redirect target that refuses us has usually expired: worth resolving again, so retryable.
            _ => new StorageException(StorageErrorKind.BadResponse, $"{source} answered {status} for blob {blobId}"),
        };
    }

    private async Task CopyBodyAsync(HttpResponseMessage response, string blobId, long offset, Memory<byte> buffer,
        CancellationToken cancellation)
    {
        HttpContentHeaders headers = response.Content.Headers;
        long skip = 0;
        if (response.StatusCode == HttpStatusCode.PartialContent)
        {
            ContentRangeHeaderValue? range = headers.ContentRange;
            if (range?.Length is long blobLength && offset + buffer.Length > blobLength)
            {
                // HTTP clips a range that runs past the end; for us that is a blob too short for the image.
                _sizes[blobId] = blobLength;
                throw new StorageException(StorageErrorKind.BlobTooShort,
                    $"blob {blobId} is {blobLength} bytes, shorter than the requested range " +
                    $"[{offset}, {offset + buffer.Length})");
            }

            if (range?.From != offset || range.To != offset + buffer.Length - 1)
            {
                throw new StorageException(StorageErrorKind.BadResponse,
                    $"registry {_settings.Host} answered range {range?.From}-{range?.To} for blob {blobId}, " +
                    $"asked for {offset}-{offset + buffer.Length - 1}");
            }

            if (range.Length is long total)
            {
                _sizes[blobId] = total;
            }
        }
        else
        {
            // The server ignored the Range header and sends the whole blob: skip to the wanted part.
            if (headers.ContentLength is long total)
            {
                _sizes[blobId] = total;
                if (total < offset + buffer.Length)
                {
                    throw new StorageException(StorageErrorKind.BlobTooShort,
                        $"blob {blobId} is {total} bytes, shorter than the requested range " +
                        $"[{offset}, {offset + buffer.Length})");
                }
            }

            skip = offset;
        }

        await using Stream body = await response.Content.ReadAsStreamAsync(cancellation).ConfigureAwait(false);
        if (skip > 0)
        {
            byte[] discard = ArrayPool<byte>.Shared.Rent(64 * 1024);
            try
            {
                while (skip > 0)
                {
                    int n = await body.ReadAsync(discard.AsMemory(0, (int)Math.Min(skip, discard.Length)), cancellation)
                        .ConfigureAwait(false);
                    if (n == 0)
                    {
                        ThrowTruncated(blobId, offset, buffer.Length, 0);
                    }

                    skip -= n;
                }
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(discard);
            }
        }

        int done = 0;
        while (done < buffer.Length)
        {
            int n = await body.ReadAsync(buffer[done..], cancellation).ConfigureAwait(false);
            if (n == 0)
            {
                ThrowTruncated(blobId, offset, buffer.Length, done);
            }

            done += n;
        }
    }

    private void ThrowTruncated(string blobId, long offset, int length, int received) =>
        throw new StorageException(StorageErrorKind.BadResponse,
            $"response for blob {blobId} range [{offset}, {offset + length}) from registry {_settings.Host} " +
            $"ended after {received} of {length} bytes");

    private Uri ResolveRedirect(HttpResponseMessage response, string blobId)
    {
        Uri? location = response.Headers.Location;
        Uri? from = response.RequestMessage?.RequestUri;
        if (location is null || from is null)
        {
            throw new StorageException(StorageErrorKind.BadResponse,
                $"registry {_settings.Host} redirected blob {blobId} without a Location");
        }

        var target = new UriBuilder(location.IsAbsoluteUri ? location : new Uri(from, location));
        if (!string.IsNullOrEmpty(_settings.BlobUrlScheme))
        {
            target.Scheme = _settings.BlobUrlScheme;
        }

        if (!string.IsNullOrEmpty(_settings.BlobRedirectedHost))
        {
            // "host" or "host:port": the port of the original target is kept unless one is given.
            string[] parts = _settings.BlobRedirectedHost.Split(':', 2);
            target.Host = parts[0];
            if (parts.Length == 2 && int.TryParse(parts[1], out int port))
            {
                target.Port = port;
            }
        }

        return target.Uri;
    }

    private static bool IsRedirect(HttpStatusCode status) =>
        status is HttpStatusCode.MovedPermanently or HttpStatusCode.Found or HttpStatusCode.SeeOther
            or HttpStatusCode.TemporaryRedirect or HttpStatusCode.PermanentRedirect;

    /// <summary>Blob ids come from untrusted images and go into a URL path: only letters and digits pass.</summary>
    private static void CheckBlobId(string blobId)
    {
        bool valid = blobId.Length is > 0 and <= 128;
        foreach (char c in blobId)
        {
            valid &= char.IsAsciiLetterOrDigit(c);
        }

        if (!valid)
        {
            throw new StorageException(StorageErrorKind.BlobNotFound, $"invalid registry blob id \"{blobId}\"");
        }
    }

    private sealed record RedirectTarget(Uri Uri, long ExpiresAt);
}
