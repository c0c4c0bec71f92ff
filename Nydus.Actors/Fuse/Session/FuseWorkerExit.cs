using Nydus.Actors.Interop;

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

/// <summary>A worker's last word, handed to the session's exit callback on the worker's own thread.</summary>
/// <param name="Generation">Which Start() the worker belonged to.</param>
/// <param name="WorkerIndex">0-based index within that start.</param>
/// <param name="Reason">Why it ended.</param>
/// <param name="Errno">The errno behind Unmounted or Faulted (Success otherwise).</param>
/// <param name="Exception">The exception behind a fault, if any.</param>
public sealed record FuseWorkerExit(int Generation, int WorkerIndex, FuseWorkerExitReason Reason, Errno Errno, Exception? Exception = null);
