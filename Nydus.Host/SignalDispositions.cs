using System.Runtime.InteropServices;

namespace Nydus.Host;

/// <summary>
/// A process started from a non-interactive shell (a script, `cmd &amp;`) inherits SIGINT and SIGQUIT ignored
/// (SIG_IGN), and the runtime leaves an ignored signal alone: such a daemon never heard Ctrl-C or `kill -INT`. A
/// daemon owns its signals, so the ones it handles are set back to their default first thing in Main: the runtime
/// reads the dispositions when its signal handling starts (the first Console or PosixSignalRegistration use) and
/// installs no handler for a signal it found ignored, so a reset after that point only leaves the default action
/// (the process dies without unmounting).
/// </summary>
internal static partial class SignalDispositions
{
    private static readonly IntPtr SigIgn = 1;

    /// <summary>glibc's struct sigaction on Linux (x86-64 and arm64): handler, 1024-bit mask, flags, restorer.</summary>
    [StructLayout(LayoutKind.Sequential)]
    private unsafe struct SigAction
    {
        public IntPtr Handler;
        public fixed ulong Mask[16];
        public int Flags;
        public IntPtr Restorer;
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int sigaction(int signal, in SigAction action, out SigAction old);

    [LibraryImport("libc", EntryPoint = "sigaction", SetLastError = true)]
    private static partial int sigactionQuery(int signal, IntPtr action, out SigAction old);

    /// <summary>Sets each of <paramref name="signals"/> that is ignored back to SIG_DFL; returns those it changed.</summary>
    public static IReadOnlyList<int> UnignoreAll(params int[] signals)
    {
        var changed = new List<int>();
        foreach (var signal in signals)
        {
            if (sigactionQuery(signal, IntPtr.Zero, out var current) != 0 || current.Handler != SigIgn) continue;
            if (sigaction(signal, new SigAction(), out _) == 0) changed.Add(signal);
        }
        return changed;
    }
}
