using Nydus.Actors.Daemon;
using Nydus.Actors.Daemon.Block;
using Nydus.Actors.Daemon.Mounts;

namespace Nydus.Actors.Api;

/// <summary>
/// The kinds of failure every API of this process answers with (the daemon's, its mount API and the node agent's).
/// <see cref="ApiErrorMap"/> is the one place that turns a kind into an HTTP status and the body's <c>code</c>.
/// </summary>
public enum ApiErrorKind
{
    /// <summary>The request itself is wrong: body, query, config, image, source (400).</summary>
    BadRequest,
    /// <summary>A state machine input the daemon's state does not take (400, upstream's).</summary>
    UnexpectedEvent,
    /// <summary>A managed daemon did not start (agent, 400: its arguments are the caller's).</summary>
    StartFailed,
    /// <summary>No endpoint at the path (404).</summary>
    NoRoute,
    /// <summary>The thing named does not exist: a mountpoint, a managed daemon, metrics (404).</summary>
    NotFound,
    /// <summary>The name is taken, or the mountpoint is inside, above or over another mount (409).</summary>
    AlreadyExists,
    /// <summary>The target is not in a state to do this now (agent: upgrade of a daemon not running with its fd held; 409).</summary>
    WrongState,
    /// <summary>The request body is larger than the API takes (413).</summary>
    PayloadTooLarge,
    /// <summary>The daemon failed doing something it should have managed (500).</summary>
    Internal,
    ActionFailed,
    MountFailed,
    UpgradeManager,
    UpgradeFailed,
    Stopped,
    /// <summary>The daemon's disk is full: the change could not be recorded, so nothing changed (507).</summary>
    InsufficientStorage,
    /// <summary>Not served by this build or this kind of daemon (501).</summary>
    Unsupported,
    /// <summary>Not yet: the daemon has not reached the state this needs (503).</summary>
    NotReady,
    /// <summary>The request's time limit ran out, or the owning actor did not answer in time (504).</summary>
    Timeout,
}

/// <summary>Error kind to HTTP status and code, for every API; and the other layers' error kinds to API kinds.</summary>
public static class ApiErrorMap
{
    /// <summary>The HTTP status of <paramref name="kind"/>. The code in the body is the kind's name.</summary>
    public static int StatusOf(ApiErrorKind kind) => kind switch
    {
        ApiErrorKind.BadRequest or ApiErrorKind.UnexpectedEvent or ApiErrorKind.StartFailed => 400,
        ApiErrorKind.NoRoute or ApiErrorKind.NotFound => 404,
        ApiErrorKind.AlreadyExists or ApiErrorKind.WrongState => 409,
        ApiErrorKind.PayloadTooLarge => 413,
        ApiErrorKind.Unsupported => 501,
        ApiErrorKind.InsufficientStorage => 507,
        ApiErrorKind.NotReady => 503,
        ApiErrorKind.Timeout => 504,
        _ => 500,
    };

    public static string CodeOf(ApiErrorKind kind) => kind.ToString();

    /// <summary>Upstream's mapping of daemon errors: UnexpectedEvent 400, NotReady 503, Unsupported 501, else 500.</summary>
    public static ApiErrorKind Of(DaemonErrorKind kind) => kind switch
    {
        DaemonErrorKind.UnexpectedEvent => ApiErrorKind.UnexpectedEvent,
        DaemonErrorKind.NotReady => ApiErrorKind.NotReady,
        DaemonErrorKind.Unsupported => ApiErrorKind.Unsupported,
        DaemonErrorKind.UpgradeManager => ApiErrorKind.UpgradeManager,
        DaemonErrorKind.Stopped => ApiErrorKind.Stopped,
        _ => ApiErrorKind.ActionFailed,
    };

    /// <summary>The mount table's answers (a departure from upstream, which answers 500 for all of them).</summary>
    public static ApiErrorKind Of(MountErrorKind kind) => kind switch
    {
        MountErrorKind.AlreadyExists => ApiErrorKind.AlreadyExists,
        MountErrorKind.NotFound => ApiErrorKind.NotFound,
        MountErrorKind.Invalid => ApiErrorKind.BadRequest,
        MountErrorKind.Unsupported => ApiErrorKind.Unsupported,
        MountErrorKind.Timeout => ApiErrorKind.Timeout,
        MountErrorKind.InsufficientStorage => ApiErrorKind.InsufficientStorage,
        _ => ApiErrorKind.MountFailed,
    };

    /// <summary>The block service's answers.</summary>
    public static ApiErrorKind Of(BlockErrorKind kind) => kind switch
    {
        BlockErrorKind.Invalid => ApiErrorKind.BadRequest,
        BlockErrorKind.NotFound => ApiErrorKind.NotFound,
        BlockErrorKind.AlreadyExists => ApiErrorKind.AlreadyExists,
        BlockErrorKind.NotReady => ApiErrorKind.NotReady,
        BlockErrorKind.InsufficientStorage => ApiErrorKind.InsufficientStorage,
        _ => ApiErrorKind.Internal,
    };

    /// <summary>The blob cache manager's answers (upstream: 400 for a bad entry, 500 for the rest, a panic for GET).</summary>
    public static ApiErrorKind Of(Storage.Cache.Blobs.BlobCacheErrorKind kind) => kind switch
    {
        Storage.Cache.Blobs.BlobCacheErrorKind.Invalid => ApiErrorKind.BadRequest,
        Storage.Cache.Blobs.BlobCacheErrorKind.AlreadyExists => ApiErrorKind.AlreadyExists,
        Storage.Cache.Blobs.BlobCacheErrorKind.NotFound => ApiErrorKind.NotFound,
        Storage.Cache.Blobs.BlobCacheErrorKind.NotReady => ApiErrorKind.NotReady,
        Storage.Cache.Blobs.BlobCacheErrorKind.InsufficientStorage => ApiErrorKind.InsufficientStorage,
        Storage.Cache.Blobs.BlobCacheErrorKind.InUse => ApiErrorKind.WrongState,
        Storage.Cache.Blobs.BlobCacheErrorKind.Unsupported => ApiErrorKind.Unsupported,
        _ => ApiErrorKind.Internal,
    };
}
