namespace Nydus.Actors.Upgrade;

/// <summary>What went wrong in a state/descriptor transfer (upstream's upgrade::Error variants, by name).</summary>
public enum UpgradeErrorKind
{
    /// <summary>No descriptor to send, or none arrived (upstream <c>NoEnoughFds</c>).</summary>
    NoEnoughFds,
    /// <summary>The supervisor socket could not be reached, or a transfer failed mid-way.</summary>
    Socket,
    /// <summary>A connect/accept/read/write did not finish in time.</summary>
    Timeout,
    /// <summary>The handoff document is truncated, corrupt, or of an unknown version.</summary>
    CorruptState,
}

/// <summary>A failed save/restore over the supervisor socket or a bad handoff document. Never retried silently.</summary>
public sealed class UpgradeException(UpgradeErrorKind kind, string message, Exception? inner = null)
    : Exception(message, inner)
{
    public UpgradeErrorKind Kind { get; } = kind;
}
