using Akka.Actor;
using Nydus.Actors.Daemon;
using Nydus.Actors.Fuse;
using Nydus.Actors.Interop;
using Nydus.Actors.Rafs;
using Nydus.Actors.Storage;
using Xunit;

namespace Nydus.Actors.Tests.Daemon;

public class DaemonSupervisionTests
{
    public static TheoryData<Exception, Directive> Decisions() => new()
    {
        { new ActorInitializationException("cannot create"), Directive.Stop },
        { new FuseException(FuseErrorKind.WorkerFaulted, Errno.EIO, "worker died"), Directive.Restart },
        { new FuseException(FuseErrorKind.MountFailed, Errno.EPERM, "mount refused"), Directive.Stop },
        { new RafsException(RafsErrorKind.InvalidSuperBlock, "corrupt image"), Directive.Stop },
        { new StorageException(StorageErrorKind.BackendUnavailable, "registry down"), Directive.Restart },
        { new IOException("disk"), Directive.Restart },
        { new TimeoutException("slow"), Directive.Restart },
        { new InvalidOperationException("a bug"), Directive.Escalate },
    };

    [Theory]
    [MemberData(nameof(Decisions))]
    public void Each_failure_kind_gets_its_directive(Exception failure, Directive expected) =>
        Assert.Equal(expected, DaemonSupervision.Decide(failure));
}
