using Nydus.Actors.Interop;

namespace Nydus.Actors.Fuse.Session;

/// <summary>A worker's last word, handed to the session's exit callback on the worker's own thread.</summary>
/// <param name="Generation">Which Start() the worker belonged to.</param>
/// <param name="WorkerIndex">0-based index within that start.</param>
/// <param name="Reason">Why it ended.</param>
/// <param name="Errno">The errno behind Unmounted or Faulted (Success otherwise).</param>
/// <param name="Exception">The exception behind a fault, if any.</param>
public sealed record FuseWorkerExit(int Generation, int WorkerIndex, FuseWorkerExitReason Reason, Errno Errno, Exception? Exception = null);
