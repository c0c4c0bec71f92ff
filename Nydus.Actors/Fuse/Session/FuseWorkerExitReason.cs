namespace Nydus.Actors.Fuse.Session;

/// <summary>Why a worker thread ended.</summary>
public enum FuseWorkerExitReason
{
    /// <summary>Asked to stop through the session's stop event; the mount is untouched.</summary>
    Stopped,

    /// <summary>/dev/fuse answered ENODEV: the file system was unmounted or the connection aborted.</summary>
    Unmounted,

    /// <summary>The worker loop itself failed (not a file-system method: those cost one request an EIO).</summary>
    Faulted,
}
