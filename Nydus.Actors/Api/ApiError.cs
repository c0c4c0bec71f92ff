using Nydus.Actors.Daemon;

namespace Nydus.Actors.Api;

/// <summary>
/// An API failure: the HTTP status and the body <c>{"code": "...", "message": "..."}</c>. The code names the kind of
/// problem (unlike upstream's "UNDEFINED" plus a Rust debug dump); the message names the input at fault. Status and
/// code come from <see cref="ApiErrorMap"/>, the same for every API.
/// </summary>
public sealed class ApiError(ApiErrorKind kind, string message) : Exception(message)
{
    public ApiErrorKind Kind { get; } = kind;
    public int Status => ApiErrorMap.StatusOf(Kind);
    public string Code => ApiErrorMap.CodeOf(Kind);

    public static ApiError BadRequest(string message) => new(ApiErrorKind.BadRequest, message);
    public static ApiError NoRoute(string path) => new(ApiErrorKind.NoRoute, $"no API endpoint at {path}");
    public static ApiError NotFound(string message) => new(ApiErrorKind.NotFound, message);
    public static ApiError Conflict(string message) => new(ApiErrorKind.AlreadyExists, message);
    public static ApiError Unsupported(string message) => new(ApiErrorKind.Unsupported, message);
    public static ApiError NotReady(string message) => new(ApiErrorKind.NotReady, message);
    public static ApiError Timeout(string message) => new(ApiErrorKind.Timeout, message);
    public static ApiError Internal(string message) => new(ApiErrorKind.Internal, message);
    public static ApiError TooLarge(string message) => new(ApiErrorKind.PayloadTooLarge, message);

    public static ApiError FromDaemon(DaemonError error) => new(ApiErrorMap.Of(error.Kind), error.Message);
}
