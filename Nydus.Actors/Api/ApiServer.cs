using System.Text.Json;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Nydus.Actors.Api.Endpoints;
using Serilog;
using ILogger = Microsoft.Extensions.Logging.ILogger;
using BadHttpRequestException = Microsoft.AspNetCore.Http.BadHttpRequestException;
using Serilog.Extensions.Logging;

namespace Nydus.Actors.Api;

/// <summary>
/// The HTTP API on the daemon's Unix socket (upstream's <c>--apisock</c>), served by Kestrel. Handlers are plain
/// async code that asks the owning actor. The socket is bound in a private directory, set to 0600 and only then
/// renamed onto the path (no moment in which another user could connect), and removed on dispose. Every request is
/// bounded: one body limit (<see cref="ApiLimits.MaxBodyBytes"/>), Kestrel's header and body-rate timeouts, and each
/// handler's own time limit.
/// </summary>
public sealed class ApiServer : IAsyncDisposable
{
    private static readonly Serilog.ILogger Log = Serilog.Log.ForContext<ApiServer>();
    // The API speaks to programs, not browsers: no HTML-safe escaping of quotes and plus signs.
    private static readonly JsonSerializerOptions Json = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private readonly KestrelServer _server;
    private readonly KestrelServerOptions _options;
    private readonly string _socketPath;
    private readonly RequestsInFlight _inFlight;

    private ApiServer(KestrelServer server, KestrelServerOptions options, string socketPath, RequestsInFlight inFlight)
    {
        _server = server;
        _options = options;
        _socketPath = socketPath;
        _inFlight = inFlight;
    }

    public string SocketPath => _socketPath;

    /// <summary>
    /// The keep-alive limit meaning "never": a century. Not Kestrel's own infinite (Timeout.InfiniteTimeSpan, stored as
    /// TimeSpan.MaxValue): its timeout arithmetic adds that to the current timestamp, overflows, and the connection is
    /// closed at the next heartbeat, within a second; measured here: an idle connection got EPIPE after 2.5 s.
    /// </summary>
    public static readonly TimeSpan NoIdleLimit = TimeSpan.FromDays(36500);

    /// <summary>The idle limit Kestrel applies between requests (<see cref="NoIdleLimit"/>: none).</summary>
    public TimeSpan KeepAliveTimeout => _options.Limits.KeepAliveTimeout;

    /// <summary>The daemon's API: upstream's endpoints, answered by the daemon actor.</summary>
    public static Task<ApiServer> StartAsync(string socketPath, ApiContext api, CancellationToken cancellationToken = default) =>
        StartAsync(ApiListener.Bind(socketPath), api, cancellationToken);

    /// <summary>The daemon's API on a socket bound early (<see cref="ApiListener"/>): clients that connected
    /// meanwhile are answered now.</summary>
    public static Task<ApiServer> StartAsync(ApiListener listener, ApiContext api, CancellationToken cancellationToken = default) =>
        StartAsync(listener, routes =>
        {
            DaemonEndpoints.Map(routes, api);
            MountEndpoints.Map(routes, api);
            FuseHandoffEndpoints.Map(routes, api);
            BlockEndpoints.Map(routes, api);
            BlobEndpoints.Map(routes, api);
            MetricsEndpoints.Map(routes, api.Metrics, api.Fscache);
            ConfigEndpoints.Map(routes, api.Metrics);
        }, cancellationToken, api.IdleTimeout);

    /// <summary>An API with the given routes (the node agent's, for one), with the same socket handling and errors.</summary>
    public static Task<ApiServer> StartAsync(string socketPath, Action<ApiRoutes> map, CancellationToken cancellationToken = default,
        TimeSpan? idleTimeout = null) =>
        StartAsync(ApiListener.Bind(socketPath), map, cancellationToken, idleTimeout);

    /// <param name="listener">The bound socket; the server owns it from now on (it is disposed here either way).</param>
    /// <param name="idleTimeout">How long a connection may sit idle between requests before the server closes it;
    /// null (the default) never closes it. nydus-snapshotter holds one connection per daemon and takes its hang-up
    /// for the daemon's death, so only shutdown may end a client's connection (Kestrel's own default is 130 s).</param>
    public static async Task<ApiServer> StartAsync(ApiListener listener, Action<ApiRoutes> map, CancellationToken cancellationToken = default,
        TimeSpan? idleTimeout = null)
    {
        using var bound = listener;
        var socketPath = listener.Path;
        var routes = new ApiRoutes();
        map(routes);

        // Kestrel alone, without the generic host, its configuration sources and its dependency injection: none of
        // them is used here (one listener, one request delegate), and setting them up was a good part of the ~200 ms
        // of CPU the API took to come up, all of it before the first answer.
        var loggerFactory = new SerilogLoggerFactory(Serilog.Log.Logger);
        var kestrelOptions = new KestrelServerOptions
        {
            AddServerHeader = false,
            // Kestrel asks these for its own optional services (none registered: none used).
            ApplicationServices = EmptyServices.Instance,
        };
        kestrelOptions.Limits.KeepAliveTimeout = idleTimeout ?? NoIdleLimit;
        // No cap on open connections (Kestrel's default too): idle ones cost a socket and no thread, and the
        // listen backlog (512) queues bursts, so many idle clients never keep a new request waiting.
        kestrelOptions.Limits.MaxConcurrentConnections = null;
        kestrelOptions.Limits.MaxRequestBodySize = ApiLimits.MaxBodyBytes;
        // Only the daemon's owner may drive it (the API can unmount and stop it): the listener was bound privately
        // and published 0600 (ApiSocket), and is adopted here as it is.
        kestrelOptions.ListenHandle(listener.Adopt());
        var server = new KestrelServer(Options.Create(kestrelOptions),
            new SocketTransportFactory(Options.Create(new SocketTransportOptions()), loggerFactory), new WarningsOnly(loggerFactory));
        var inFlight = new RequestsInFlight();
        var application = new ApiApplication(async context =>
        {
            inFlight.Enter();
            try
            {
                await HandleAsync(context, routes);
                // Sent, not only written: the answer to exit may be followed by the end of the process at once.
                await context.Response.CompleteAsync();
            }
            finally
            {
                inFlight.Leave();
            }
        });

        try
        {
            await server.StartAsync(application, cancellationToken);
        }
        catch
        {
            server.Dispose();
            try { File.Delete(socketPath); } catch (IOException) { }
            throw;
        }
        Log.Information("API server listening on {ApiSocket}", socketPath);
        return new ApiServer(server, kestrelOptions, socketPath, inFlight);
    }

    private static async Task HandleAsync(HttpContext context, ApiRoutes routes)
    {
        var request = new ApiRequest(context);
        context.Response.Headers.Server = "Nydus API";
        ApiResult result;
        try
        {
            var handler = routes.Resolve(context.Request.Method, request.Path);
            result = await handler(request);
        }
        catch (ApiError e)
        {
            await WriteAsync(context, e.Status, new ApiErrorBody(e.Code, Shorten(e.Message)));
            return;
        }
        catch (BadHttpRequestException e)
        {
            // Kestrel's own refusals while a handler reads the body: over the body limit, too slow, malformed.
            var kind = e.StatusCode == 413 ? ApiErrorKind.PayloadTooLarge : e.StatusCode == 408 ? ApiErrorKind.Timeout : ApiErrorKind.BadRequest;
            await WriteAsync(context, ApiErrorMap.StatusOf(kind), new ApiErrorBody(ApiErrorMap.CodeOf(kind), Shorten(e.Message)));
            return;
        }
        catch (Exception e) when (!context.RequestAborted.IsCancellationRequested)
        {
            Log.Error(e, "API handler for {Method} {Path} failed", context.Request.Method, request.Path);
            await WriteAsync(context, 500, new ApiErrorBody(ApiErrorMap.CodeOf(ApiErrorKind.Internal), Shorten(e.Message)));
            return;
        }
        await WriteAsync(context, result.Status, result.Body);
    }

    private static string Shorten(string message) =>
        message.Length <= ApiLimits.MaxMessageChars ? message
            : $"{message[..ApiLimits.MaxMessageChars]}... ({message.Length - ApiLimits.MaxMessageChars} more characters cut)";

    private static async Task WriteAsync(HttpContext context, int status, object? body)
    {
        context.Response.StatusCode = status;
        if (body is null) return;
        if (body is PrometheusPage page)
        {
            context.Response.ContentType = "text/plain; version=0.0.4";
            await context.Response.WriteAsync(page.Text, context.RequestAborted);
            return;
        }
        context.Response.ContentType = "application/json";
        await JsonSerializer.SerializeAsync(context.Response.Body, body, body.GetType(), Json, context.RequestAborted);
    }

    /// <summary>
    /// For a process that ends right after: removes the socket file (no new client finds it) and waits, up to
    /// <paramref name="timeout"/>, until every request in flight has its answer sent, without Kestrel's graceful
    /// stop and disposal (about 100 ms, most of it code that runs only then). Connections still open are closed by the
    /// process's end.
    /// </summary>
    public async Task CloseForExitAsync(TimeSpan timeout)
    {
        try { File.Delete(_socketPath); } catch (IOException) { }
        var deadline = DateTime.UtcNow + timeout;
        while (_inFlight.Count > 0 && DateTime.UtcNow < deadline) await Task.Delay(1);
    }

    /// <summary>What the generic host's HostingApplication does for us, minus what we do not use (request services,
    /// activities, diagnostics): a context over Kestrel's features, handed to the API's one request delegate.</summary>
    private sealed class ApiApplication(RequestDelegate handle) : IHttpApplication<HttpContext>
    {
        public HttpContext CreateContext(IFeatureCollection contextFeatures) => new DefaultHttpContext(contextFeatures);
        public Task ProcessRequestAsync(HttpContext context) => handle(context);
        public void DisposeContext(HttpContext context, Exception? exception) { }
    }

    /// <summary>A service provider with nothing in it.</summary>
    private sealed class EmptyServices : IServiceProvider
    {
        public static readonly EmptyServices Instance = new();
        public object? GetService(Type serviceType) => null;
    }

    /// <summary>Kestrel's own log lines at Warning and above only (connection chatter stays out of the daemon's log).</summary>
    private sealed class WarningsOnly(ILoggerFactory inner) : ILoggerFactory
    {
        public ILogger CreateLogger(string categoryName) => new Filtered(inner.CreateLogger(categoryName));
        public void AddProvider(ILoggerProvider provider) => inner.AddProvider(provider);
        public void Dispose() => inner.Dispose();

        private sealed class Filtered(ILogger logger) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state) where TState : notnull => logger.BeginScope(state);
            public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Warning && logger.IsEnabled(logLevel);
            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
            {
                if (IsEnabled(logLevel)) logger.Log(logLevel, eventId, state, exception, formatter);
            }
        }
    }

    /// <summary>How many requests are being answered now.</summary>
    private sealed class RequestsInFlight
    {
        private int _count;
        public int Count => Volatile.Read(ref _count);
        public void Enter() => Interlocked.Increment(ref _count);
        public void Leave() => Interlocked.Decrement(ref _count);
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            using var stopTimeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            await _server.StopAsync(stopTimeout.Token);
        }
        finally
        {
            _server.Dispose();
            // Upstream removes its own socket file on the way out (only its own: an upgrade's new daemon has another).
            try { File.Delete(_socketPath); } catch (IOException) { }
        }
    }
}
