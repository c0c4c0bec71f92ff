using System.Diagnostics;
using Nydus.Actors.Config;
using Serilog;

namespace Nydus.Actors.Storage.Backends;

/// <summary>
/// One registry mirror (<see cref="MirrorConfig"/>) and its health: requests to the registry keep their path and
/// query and go to the mirror's scheme and host first, with its headers. After <c>failure_limit</c> failures in a
/// row (no connection, timeout, 5xx) it is skipped for <c>health_check_interval</c>; then the next request tries it
/// again, after its ping URL answered when one is set.
/// </summary>
internal sealed class RegistryMirror
{
    private static readonly ILogger Log = Serilog.Log.ForContext<RegistryMirror>();

    private readonly MirrorConfig _config;
    private readonly Uri _base;
    private int _failures;
    private long _skipUntil;

    public RegistryMirror(MirrorConfig config)
    {
        _config = config;
        string host = config.Host.Contains("://", StringComparison.Ordinal) ? config.Host : "https://" + config.Host;
        if (!Uri.TryCreate(host, UriKind.Absolute, out Uri? uri) || uri.Scheme is not ("http" or "https"))
        {
            throw new ConfigException(ConfigErrorKind.InvalidBackend,
                $"backend.registry.mirrors: host '{config.Host}' is not an http or https URL");
        }

        _base = uri;
    }

    public string Host => _base.Authority;

    public IReadOnlyDictionary<string, string> Headers => _config.Headers;

    public bool AuthThrough => _config.AuthThrough;

    public Uri Rewrite(Uri registryUri) =>
        new UriBuilder(registryUri) { Scheme = _base.Scheme, Host = _base.Host, Port = _base.Port }.Uri;

    /// <summary>Whether to try the mirror now; pings it first (bounded by <paramref name="timeout"/>) when it is due again.</summary>
    public async ValueTask<bool> IsUsableAsync(HttpClient client, TimeSpan timeout, CancellationToken cancellation)
    {
        if (Volatile.Read(ref _failures) < Math.Max(1, (int)_config.FailureLimit))
        {
            return true;
        }

        if (Stopwatch.GetTimestamp() < Interlocked.Read(ref _skipUntil))
        {
            return false;
        }

        if (string.IsNullOrEmpty(_config.PingUrl))
        {
            return true;
        }

        try
        {
            using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
            deadline.CancelAfter(timeout);
            using HttpResponseMessage ping = await client.GetAsync(_config.PingUrl, deadline.Token).ConfigureAwait(false);
            if ((int)ping.StatusCode is >= 200 and < 400)
            {
                return true;
            }
        }
        catch (Exception e) when (e is HttpRequestException or OperationCanceledException && !cancellation.IsCancellationRequested)
        {
        }

        SkipForInterval();
        return false;
    }

    public void Succeeded()
    {
        if (Interlocked.Exchange(ref _failures, 0) >= Math.Max(1, (int)_config.FailureLimit))
        {
            Log.Information("Registry mirror {Mirror} answers again", Host);
        }
    }

    public void Failed(string reason)
    {
        int failures = Interlocked.Increment(ref _failures);
        if (failures >= Math.Max(1, (int)_config.FailureLimit))
        {
            SkipForInterval();
            if (failures == Math.Max(1, (int)_config.FailureLimit))
            {
                Log.Warning("Registry mirror {Mirror} failed {Failures} times ({Reason}); skipped for {Seconds} s",
                    Host, failures, reason, _config.HealthCheckInterval);
            }
        }
    }

    private void SkipForInterval() =>
        Interlocked.Exchange(ref _skipUntil,
            Stopwatch.GetTimestamp() + (long)Math.Max(1, _config.HealthCheckInterval) * Stopwatch.Frequency);
}
