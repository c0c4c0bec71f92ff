using Microsoft.Win32.SafeHandles;
using Nydus.Actors.Fuse.Abi;
using Nydus.Actors.Interop;
using Serilog;

namespace Nydus.Actors.Fuse.Session;

/// <summary>What a daemon that took over a FUSE connection does with requests its dead predecessor had read
/// but not answered (upstream's <c>--failover-policy</c>).</summary>
public enum FuseFailoverPolicy
{
    /// <summary>Nothing: those requests stay pending until the caller gives up (or forever).</summary>
    None,

    /// <summary>Ask the kernel to abort them with ECONNABORTED (connections/N/flush): callers see an error.</summary>
    Flush,

    /// <summary>Ask the kernel to queue them again with bit 63 of <c>unique</c> set (FUSE_NOTIFY_RESEND, 6.9+).</summary>
    Resend,
}

/// <summary>How the pending requests were handed back to the new daemon.</summary>
public enum FuseFailoverDrainResult
{
    Nothing,
    ResendNotified,
    ResendBySysfs,
    Flushed,
    Failed,
}

/// <summary>
/// Applied once at restore, on the fd received from the supervisor, before the workers start reading. Resend first
/// writes FUSE_NOTIFY_RESEND (header only, unique 0, error = 7) to the fd; a kernel that refuses it gets a 1 in
/// <c>&lt;connections&gt;/&lt;minor&gt;/resend</c>. Flush writes 1 to <c>.../flush</c>; both files exist only in
/// vendor kernels, so on mainline flush fails (logged) and behaves like none.
/// Which resent requests the dispatcher repeats and which it refuses: <see cref="IsSafeToRepeat"/>.
/// </summary>
public static class FuseFailoverDrain
{
    private static readonly ILogger Log = Serilog.Log.ForContext(typeof(FuseFailoverDrain));

    /// <summary>Upstream's order: /proc/sys/fs/fuse/connections, then /sys/fs/fuse/connections if the first cannot be opened.</summary>
    public static readonly string[] ConnectionsDirectories = ["/proc/sys/fs/fuse/connections", "/sys/fs/fuse/connections"];

    /// <summary>The spellings <c>--failover-policy</c> accepts, one per <see cref="FuseFailoverPolicy"/>.</summary>
    public static readonly IReadOnlyList<string> PolicyNames =
        Enum.GetNames<FuseFailoverPolicy>().Select(name => name.ToLowerInvariant()).ToArray();

    /// <summary>Accepts exactly the lower-case names (upstream's spelling), not "None" or "2".</summary>
    public static bool TryParse(string value, out FuseFailoverPolicy policy)
    {
        policy = default;
        return PolicyNames.Contains(value) && Enum.TryParse(value, ignoreCase: true, out policy);
    }

    public static FuseFailoverPolicy Parse(string value) => TryParse(value, out var policy)
        ? policy
        : throw new ArgumentException($"invalid failover policy '{value}': use one of {string.Join(", ", PolicyNames)}", nameof(value));

    /// <summary>Applies <paramref name="policy"/> to the connection behind <paramref name="device"/>.</summary>
    /// <param name="connection">Connection id (FuseMount.FindConnectionId) for the sysfs paths (fallback for resend, required for flush).</param>
    public static FuseFailoverDrainResult Apply(FuseFailoverPolicy policy, SafeFileHandle device, uint? connection,
        IReadOnlyList<string>? connectionsDirectories = null)
    {
        switch (policy)
        {
            case FuseFailoverPolicy.None:
                return FuseFailoverDrainResult.Nothing;
            case FuseFailoverPolicy.Resend:
                Errno notified = new FuseNotifier(device).Resend();
                if (notified == Errno.Success)
                {
                    return FuseFailoverDrainResult.ResendNotified;
                }

                Log.Warning("FUSE_NOTIFY_RESEND refused ({Errno}); trying the sysfs resend file", notified);
                return WriteControl(connection, "resend", connectionsDirectories ?? ConnectionsDirectories)
                    ? FuseFailoverDrainResult.ResendBySysfs
                    : FuseFailoverDrainResult.Failed;
            case FuseFailoverPolicy.Flush:
                return WriteControl(connection, "flush", connectionsDirectories ?? ConnectionsDirectories)
                    ? FuseFailoverDrainResult.Flushed
                    : FuseFailoverDrainResult.Failed;
            default:
                throw new ArgumentOutOfRangeException(nameof(policy), policy, null);
        }
    }

    /// <summary>
    /// Whether a request that comes back with the resend bit may simply be executed again. The dead daemon may
    /// or may not have carried it out, and nothing records which. Repeating gives the same result for every
    /// read-only request, and for changes stated as absolute values: WRITE and COPY_FILE_RANGE carry explicit
    /// offsets (the same bytes land at the same place), SETATTR sets given values, SETXATTR a given value,
    /// FSYNC/FLUSH/FALLOCATE converge. Namespace changes do not: a repeated MKDIR/CREATE/MKNOD/SYMLINK/LINK
    /// that already happened answers EEXIST, a repeated UNLINK/RMDIR/RENAME/REMOVEXATTR answers ENOENT/ENODATA
    /// — a lie either way. Those are refused with EIO (see <see cref="RefusedErrno"/>) so the caller learns
    /// the outcome is unknown instead of a wrong answer. They only exist on writable passthrough mounts.
    /// </summary>
    public static bool IsSafeToRepeat(FuseOpcode opcode) => opcode switch
    {
        FuseOpcode.Mkdir or FuseOpcode.Mknod or FuseOpcode.Symlink or FuseOpcode.Link or FuseOpcode.Create
            or FuseOpcode.Unlink or FuseOpcode.Rmdir or FuseOpcode.Rename or FuseOpcode.Rename2
            or FuseOpcode.RemoveXattr => false,
        _ => true,
    };

    /// <summary>The answer to a resent request that is not safe to repeat.</summary>
    public const Errno RefusedErrno = Errno.EIO;

    private static bool WriteControl(uint? connection, string file, IReadOnlyList<string> connectionsDirectories)
    {
        if (connection is null)
        {
            Log.Warning("No FUSE connection id known; cannot write {File}", file);
            return false;
        }

        // The flush and resend files exist only in vendor kernels (Anolis / Alibaba Cloud Linux); mainline
        // has abort, waiting, max_background and congestion_threshold. A missing file is logged, as upstream does.
        string id = connection.Value.ToString(System.Globalization.CultureInfo.InvariantCulture);
        foreach (string directory in connectionsDirectories)
        {
            if (!Directory.Exists(Path.Combine(directory, id)))
            {
                continue;
            }

            string path = Path.Combine(directory, id, file);
            try
            {
                File.WriteAllText(path, "1");
                return true;
            }
            catch (Exception exception) when (exception is IOException or UnauthorizedAccessException)
            {
                Log.Warning(exception, "Writing 1 to {Path} failed (this kernel may not have it)", path);
                return false;
            }
        }

        Log.Warning("FUSE connection {Connection} not found under {Directories}; cannot write {File}", id, connectionsDirectories, file);
        return false;
    }
}
