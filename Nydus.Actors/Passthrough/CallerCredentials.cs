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

        // gid first: dropping fsuid 0 would not matter for setfsgid, but keeping the order symmetric with
        // the restore (uid first) keeps the thread's capabilities consistent at every step.
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
