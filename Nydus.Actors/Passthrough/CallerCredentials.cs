using Nydus.Actors.Fuse.FileSystem;
using Nydus.Actors.Interop;

namespace Nydus.Actors.Passthrough;

/// <summary>
/// Acts as the FUSE caller for the duration of one operation by switching this thread's filesystem ids
/// (setfsuid/setfsgid are per thread), so files are created owned by the caller. Only when the daemon runs
/// as root; otherwise everything is created as the daemon's user. Supplementary groups are not adopted.
/// </summary>
internal readonly ref struct CallerCredentials
{
    private static readonly bool IsRoot = Libc.GetEffectiveUid() == 0;

    private readonly bool _switched;

    private CallerCredentials(bool switched) => _switched = switched;

    public static CallerCredentials Assume(in FuseContext context)
    {
        if (!IsRoot || (context.Uid == 0 && context.Gid == 0))
        {
            return new CallerCredentials(false);
        }

        // Switching fsuid away from 0 drops the thread's filesystem capabilities (CAP_CHOWN, CAP_DAC_*,
        // CAP_FOWNER...) until it is switched back, which is what makes host permission checks the caller's.
        Libc.SetFsGid(context.Gid);
        Libc.SetFsUid(context.Uid);
        return new CallerCredentials(true);
    }

    public void Dispose()
    {
        if (_switched)
        {
            Libc.SetFsUid(0);
            Libc.SetFsGid(0);
        }
    }
}
