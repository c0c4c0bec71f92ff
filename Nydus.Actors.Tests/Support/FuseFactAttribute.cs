using Nydus.Actors.Interop;
using Xunit;

namespace Nydus.Actors.Tests.Support;

/// <summary>
/// A fact that needs root and /dev/fuse. Where they are missing it is reported as skipped (with the
/// reason), never as passed; on this machine and in CI both exist, so these tests really run.
/// </summary>
public sealed class FuseFactAttribute : FactAttribute
{
    public FuseFactAttribute()
    {
        if (MissingPrerequisite() is { } reason)
        {
            Skip = reason;
        }
    }

    internal static string? MissingPrerequisite()
    {
        if (!OperatingSystem.IsLinux())
        {
            return "FUSE tests need Linux";
        }

        if (!File.Exists("/dev/fuse"))
        {
            return "FUSE tests need /dev/fuse";
        }

        return Libc.GetEffectiveUid() != 0 ? "FUSE tests mount with mount(2) and need root" : null;
    }
}
