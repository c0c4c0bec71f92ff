using System.Runtime.CompilerServices;
using Nydus.Actors.Fuse.Abi;
using Nydus.Actors.Interop;
using Xunit;

namespace Nydus.Actors.Tests.Fuse;

/// <summary>Sizes of the kernel structs, from linux/fuse.h (x86_64 and every 64-bit Linux alike).</summary>
public class FuseAbiTests
{
    [Fact]
    public void Headers_HaveKernelSizes()
    {
        Assert.Equal(40, Unsafe.SizeOf<FuseInHeader>());
        Assert.Equal(16, Unsafe.SizeOf<FuseOutHeader>());
    }

    [Fact]
    public void AttributeStructs_HaveKernelSizes()
    {
        Assert.Equal(88, Unsafe.SizeOf<FuseAttr>());
        Assert.Equal(80, Unsafe.SizeOf<FuseKstatfs>());
        Assert.Equal(128, Unsafe.SizeOf<FuseEntryOut>());
        Assert.Equal(104, Unsafe.SizeOf<FuseAttrOut>());
        Assert.Equal(80, Unsafe.SizeOf<FuseStatFsOut>());
    }

    [Fact]
    public void InitStructs_HaveKernelSizes()
    {
        Assert.Equal(64, Unsafe.SizeOf<FuseInitIn>());
        Assert.Equal(64, Unsafe.SizeOf<FuseInitOut>());
        Assert.Equal(16, FuseInitIn.CompatSize);
        Assert.Equal(24, FuseInitOut.Compat22Size);
    }

    [Fact]
    public void RequestStructs_HaveKernelSizes()
    {
        Assert.Equal(8, Unsafe.SizeOf<FuseForgetIn>());
        Assert.Equal(16, Unsafe.SizeOf<FuseForgetOne>());
        Assert.Equal(8, Unsafe.SizeOf<FuseBatchForgetIn>());
        Assert.Equal(16, Unsafe.SizeOf<FuseGetAttrIn>());
        Assert.Equal(16, Unsafe.SizeOf<FuseMknodIn>());
        Assert.Equal(8, Unsafe.SizeOf<FuseMkdirIn>());
        Assert.Equal(8, Unsafe.SizeOf<FuseRenameIn>());
        Assert.Equal(16, Unsafe.SizeOf<FuseRename2In>());
        Assert.Equal(8, Unsafe.SizeOf<FuseLinkIn>());
        Assert.Equal(88, Unsafe.SizeOf<FuseSetAttrIn>());
        Assert.Equal(8, Unsafe.SizeOf<FuseOpenIn>());
        Assert.Equal(16, Unsafe.SizeOf<FuseCreateIn>());
        Assert.Equal(24, Unsafe.SizeOf<FuseReleaseIn>());
        Assert.Equal(24, Unsafe.SizeOf<FuseFlushIn>());
        Assert.Equal(40, Unsafe.SizeOf<FuseReadIn>());
        Assert.Equal(40, Unsafe.SizeOf<FuseWriteIn>());
        Assert.Equal(16, Unsafe.SizeOf<FuseFsyncIn>());
        Assert.Equal(16, Unsafe.SizeOf<FuseSetXattrIn>());
        Assert.Equal(8, Unsafe.SizeOf<FuseGetXattrIn>());
        Assert.Equal(8, Unsafe.SizeOf<FuseAccessIn>());
        Assert.Equal(8, Unsafe.SizeOf<FuseInterruptIn>());
        Assert.Equal(32, Unsafe.SizeOf<FuseFallocateIn>());
        Assert.Equal(24, Unsafe.SizeOf<FuseLseekIn>());
        Assert.Equal(56, Unsafe.SizeOf<FuseCopyFileRangeIn>());
    }

    [Fact]
    public void ReplyAndNotifyStructs_HaveKernelSizes()
    {
        Assert.Equal(16, Unsafe.SizeOf<FuseOpenOut>());
        Assert.Equal(8, Unsafe.SizeOf<FuseWriteOut>());
        Assert.Equal(8, Unsafe.SizeOf<FuseGetXattrOut>());
        Assert.Equal(8, Unsafe.SizeOf<FuseLseekOut>());
        Assert.Equal(24, Unsafe.SizeOf<FuseDirent>());
        Assert.Equal(152, Unsafe.SizeOf<FuseDirentPlus>());
        Assert.Equal(24, Unsafe.SizeOf<FuseNotifyInvalInodeOut>());
        Assert.Equal(16, Unsafe.SizeOf<FuseNotifyInvalEntryOut>());
    }

    [Fact]
    public void HostStructs_HaveKernelSizes()
    {
        Assert.Equal(256, Unsafe.SizeOf<Statx>());
        Assert.Equal(120, Unsafe.SizeOf<Libc.StatFs>());
        Assert.Equal(8, Unsafe.SizeOf<Libc.PollFd>());
    }

    [Fact]
    public void ProtocolConstants_MatchKernel()
    {
        Assert.Equal(7u, FuseProtocol.KernelMajor);
        Assert.Equal(40u, FuseProtocol.KernelMinor);
        Assert.Equal(7, (int)FuseNotifyCode.Resend);
        Assert.Equal(1UL << 39, (ulong)FuseInitFlags.HasResend);
        Assert.Equal(1UL << 23, (ulong)FuseInitFlags.CacheSymlinks);
        Assert.Equal(47u, (uint)FuseOpcode.CopyFileRange);
    }
}
