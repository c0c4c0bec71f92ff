using System.Diagnostics;
using Serilog;

namespace Nydus.Actors.Storage.Backends;

/// <summary>
/// The forward proxy in front of a registry (upstream's <c>proxy</c> section, connection.rs): its own HTTP client
/// (handler with <see cref="System.Net.WebProxy"/>) and its health. Healthy at start; with a ping URL, a
/// background loop fetches it every check interval while requests flow (paused after <c>check_pause_elapsed</c>
/// without any) and sets the health from the answer, so with fallback the backend goes straight to the registry
/// within one interval of the proxy going down, and back through it within one interval of it coming up.
/// </summary>
internal sealed class RegistryProxy : IDisposable
{
    private static readonly ILogger Log = Serilog.Log.ForContext<RegistryProxy>();

    private readonly RegistryProxySettings _settings;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _healthLoop;
    private volatile bool _healthy = true;
    private long _lastActive = Stopwatch.GetTimestamp();

    public RegistryProxy(RegistryProxySettings settings, HttpClient client, HttpClient pingClient, TimeSpan pingTimeout)
    {
        _settings = settings;
        Client = client;
        _healthLoop = settings.PingUrl is null
            ? Task.CompletedTask
            : Task.Run(() => CheckHealthAsync(pingClient, settings.PingUrl, pingTimeout));
    }

    /// <summary>The client whose handler sends every request through the proxy.</summary>
    public HttpClient Client { get; }

    public bool Healthy => _healthy;

    public bool Fallback => _settings.Fallback;

    public Uri Url => _settings.Url;

    /// <summary>The URL as sent through the proxy: with <c>use_http</c>, https becomes http.</summary>
    public Uri Rewrite(Uri uri)
    {
        Interlocked.Exchange(ref _lastActive, Stopwatch.GetTimestamp());
        if (!_settings.UseHttp || uri.Scheme != Uri.UriSchemeHttps)
        {
            return uri;
        }

        var builder = new UriBuilder(uri) { Scheme = Uri.UriSchemeHttp };
        if (uri.IsDefaultPort)
        {
            builder.Port = -1;
        }

        return builder.Uri;
    }

    /// <summary>A request through the proxy failed: with a ping URL the loop decides when it is back; without one
    /// every request tries it again (upstream does the same).</summary>
    public void ReportFailure(string reason) =>
        Log.Warning("Request through proxy {Proxy} failed ({Reason}){Fallback}", _settings.Url, reason,
            _settings.Fallback ? "; going to the registry directly" : "");

    private async Task CheckHealthAsync(HttpClient pingClient, Uri pingUrl, TimeSpan timeout)
    {
        using var timer = new PeriodicTimer(_settings.CheckInterval);
        try
        {
            do
            {
                if (Stopwatch.GetElapsedTime(Interlocked.Read(ref _lastActive)) > _settings.CheckPauseElapsed)
                {
                    continue;
                }

                bool healthy;
                string detail;
                try
                {
                    using var deadline = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
                    deadline.CancelAfter(timeout);
                    using HttpResponseMessage response = await pingClient.GetAsync(pingUrl, deadline.Token).ConfigureAwait(false);
                    healthy = (int)response.StatusCode is >= 200 and < 400;
                    detail = $"status {(int)response.StatusCode}";
                }
                catch (Exception e) when (e is HttpRequestException or OperationCanceledException && !_stop.IsCancellationRequested)
                {
                    healthy = false;
                    detail = e.Message;
                }

                if (healthy != _healthy)
                {
                    if (healthy)
                    {
                        Log.Information("Proxy {Proxy} is healthy again", _settings.Url);
                    }
                    else
                    {
                        Log.Warning("Proxy {Proxy} is unhealthy ({Detail}){Fallback}", _settings.Url, detail,
                            _settings.Fallback ? "; requests go to the registry directly" : "");
                    }

                    _healthy = healthy;
                }
            }
            while (await timer.WaitForNextTickAsync(_stop.Token).ConfigureAwait(false));
        }
        catch (OperationCanceledException) when (_stop.IsCancellationRequested)
        {
        }
    }

    public void Dispose()
    {
        _stop.Cancel();
        try
        {
            _healthLoop.Wait(TimeSpan.FromSeconds(5));
        }
        catch (AggregateException)
        {
        }

        _stop.Dispose();
        Client.Dispose();
    }
}
