using Nydus.Actors.Daemon;

namespace Nydus.Actors.Api;

/// <summary>
/// An API failure: the HTTP status and the body <c>{"code": "...", "message": "..."}</c>. The code names the kind of
/// problem (unlike upstream's "UNDEFINED" plus a Rust debug dump); the message names the input at fault.
/// </summary>
public sealed class ApiError(int status, string code, string message) : Exception(message)
{
    public int Status { get; } = status;
    public string Code { get; } = code;

    public static ApiError BadRequest(string message) => new(400, "BadRequest", message);
    public static ApiError NoRoute(string path) => new(404, "NoRoute", $"no API endpoint at {path}");
    public static ApiError NotFound(string message) => new(404, "NotFound", message);
    public static ApiError Conflict(string message) => new(409, "AlreadyExists", message);
    public static ApiError Unsupported(string message) => new(501, "Unsupported", message);
    public static ApiError NotReady(string message) => new(503, "NotReady", message);
    public static ApiError Timeout(string message) => new(504, "Timeout", message);
    public static ApiError Internal(string message) => new(500, "Internal", message);

    /// <summary>Upstream's mapping of daemon errors: UnexpectedEvent 400, NotReady 503, Unsupported 501, else 500.</summary>
    public static ApiError FromDaemon(DaemonError error) => error.Kind switch
    {
        DaemonErrorKind.UnexpectedEvent => new(400, "UnexpectedEvent", error.Message),
        DaemonErrorKind.NotReady => NotReady(error.Message),
        DaemonErrorKind.Unsupported => Unsupported(error.Message),
        DaemonErrorKind.UpgradeManager => new(500, "UpgradeManager", error.Message),
        DaemonErrorKind.Stopped => new(500, "Stopped", error.Message),
        _ => new(500, "ActionFailed", error.Message),
    };
}
