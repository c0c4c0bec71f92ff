using System.Runtime.InteropServices;

namespace Nydus.Host;

/// <summary>
/// Ends the process at once with _exit(2), without the runtime's own shutdown (Environment.Exit runs the ProcessExit
/// handlers and waits for the finalizer thread's shutdown work: 7-43 ms under strace, all of it inside an upgrade's
/// stall, since the supervisor starts the successor only once the old process is gone). Only for a daemon that has
/// left its mount to a successor: its journal confirmed every write, the API's last answers are sent and the logs
/// flushed, so nothing the runtime would still do holds data; the kernel closes the descriptors as for any exit.
/// </summary>
internal static partial class ImmediateExit
{
    [LibraryImport("libc", EntryPoint = "_exit")]
    private static partial void Exit(int status);

    /// <summary>Does not return.</summary>
    public static void Now(int exitCode)
    {
        Console.Out.Flush();
        Console.Error.Flush();
        Exit(exitCode);
    }
}
