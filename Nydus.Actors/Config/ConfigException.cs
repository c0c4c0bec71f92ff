namespace Nydus.Actors.Config;

/// <summary>
/// A configuration input (config text or file, fs_type, mountpoint, prefetch list) was rejected. The message
/// names the input and the field, e.g. <c>backend.localfs: either blob_file or dir must be set</c>.
/// </summary>
/// <remarks>
/// Raised while a mount or the daemon is being set up, never on the data path. Callers reject the request
/// (upstream reports these as <c>InvalidConfig</c>/<c>InvalidArguments</c>/<c>InvalidPrefetchList</c>); an actor
/// that sees one should not be restarted for it, since retrying the same input fails the same way.
/// </remarks>
public sealed class ConfigException : Exception
{
    public ConfigException(ConfigErrorKind kind, string message, Exception? innerException = null)
        : base(message, innerException)
    {
        Kind = kind;
    }

    public ConfigErrorKind Kind { get; }
}
