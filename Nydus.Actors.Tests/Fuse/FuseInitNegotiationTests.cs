using Nydus.Actors.Fuse.Abi;
using Nydus.Actors.Fuse.FileSystem;
using Nydus.Actors.Fuse.Ops;
using Xunit;

namespace Nydus.Actors.Tests.Fuse;

public class FuseInitNegotiationTests
{
    private const FuseInitFlags EverythingLow = (FuseInitFlags)0xFFFF_FFFFUL;

    private static FuseInitIn Offer(uint minor, FuseInitFlags flags, uint maxReadahead = 128 * 1024) =>
        new(7, minor, maxReadahead, (uint)flags, (uint)((ulong)flags >> 32));

    [Fact]
    public void Negotiate_ReadOnlyImage_GrantsOnlyWantedFlagsTheKernelOffers()
    {
        FuseInitFlags offered = EverythingLow | FuseInitFlags.HasResend;
        FuseInitOut reply = FuseInitNegotiation.Negotiate(Offer(44, offered), FuseInitOptions.ReadOnlyImage, supportsReadDirPlus: true, out FuseConnectionInfo connection);

        FuseInitFlags granted = (FuseInitFlags)(reply.Flags | ((ulong)reply.Flags2 << 32));
        Assert.Equal(FuseInitOptions.ReadOnlyImageFlags, granted);
        Assert.True(granted.HasFlag(FuseInitFlags.AsyncRead | FuseInitFlags.ParallelDirops | FuseInitFlags.DoReaddirplus | FuseInitFlags.CacheSymlinks | FuseInitFlags.ExportSupport));
        Assert.False(granted.HasFlag(FuseInitFlags.WritebackCache));
        Assert.False(granted.HasFlag(FuseInitFlags.PosixAcl));
        Assert.Equal(7u, reply.Major);
        Assert.Equal(40u, reply.Minor);
        Assert.Equal(granted, connection.Flags);
    }

    [Fact]
    public void Negotiate_OlderKernel_SpeaksItsMinorAndWithoutFlags2()
    {
        // Without INIT_EXT the kernel's flags2 word is not meaningful and must not be granted from.
        var offer = new FuseInitIn(7, 31, 65536, (uint)(FuseInitFlags.AsyncRead | FuseInitFlags.MaxPages), 0xFFFF_FFFF);
        FuseInitOut reply = FuseInitNegotiation.Negotiate(offer, FuseInitOptions.ReadOnlyImage, true, out FuseConnectionInfo connection);

        Assert.Equal(31u, reply.Minor);
        Assert.Equal(0u, reply.Flags2);
        Assert.Equal((uint)(FuseInitFlags.AsyncRead | FuseInitFlags.MaxPages), reply.Flags);
        Assert.Equal(65536u, reply.MaxReadahead);
        Assert.Equal(31u, connection.ProtocolMinor);
    }

    [Fact]
    public void Negotiate_MaxPages_SizesWritesFromOptions()
    {
        var options = new FuseInitOptions { MaxWrite = 512 * 1024 };
        FuseInitOut reply = FuseInitNegotiation.Negotiate(Offer(40, EverythingLow), options, true, out _);
        Assert.Equal(128, reply.MaxPages);
        Assert.Equal(512u * 1024, reply.MaxWrite);

        FuseInitOut withoutMaxPages = FuseInitNegotiation.Negotiate(Offer(40, EverythingLow & ~FuseInitFlags.MaxPages), options, true, out _);
        Assert.Equal(32, withoutMaxPages.MaxPages);
        Assert.Equal(128u * 1024, withoutMaxPages.MaxWrite);
    }

    [Fact]
    public void Negotiate_WritablePassthrough_LeavesTruncAndKillprivToTheKernelAndAsksOptionalWriteback()
    {
        FuseInitOut plain = FuseInitNegotiation.Negotiate(Offer(40, EverythingLow), FuseInitOptions.WritablePassthrough(), true, out _);
        var flags = (FuseInitFlags)plain.Flags;
        // Both would leave clearing suid/sgid to the daemon, which cannot do it right (see WritablePassthroughFlags).
        Assert.False(flags.HasFlag(FuseInitFlags.AtomicOTrunc));
        Assert.False(flags.HasFlag(FuseInitFlags.HandleKillprivV2));
        Assert.False(flags.HasFlag(FuseInitFlags.WritebackCache));
        Assert.False(flags.HasFlag(FuseInitFlags.PosixAcl));
        Assert.False(flags.HasFlag(FuseInitFlags.CacheSymlinks));

        FuseInitOut cached = FuseInitNegotiation.Negotiate(Offer(40, EverythingLow), FuseInitOptions.WritablePassthrough(writebackCache: true, posixAcl: true), true, out _);
        Assert.True(((FuseInitFlags)cached.Flags).HasFlag(FuseInitFlags.WritebackCache | FuseInitFlags.PosixAcl));
    }

    [Fact]
    public void Negotiate_FileSystemWithoutReadDirPlus_DoesNotAskForIt()
    {
        FuseInitOut reply = FuseInitNegotiation.Negotiate(Offer(40, EverythingLow), FuseInitOptions.ReadOnlyImage, supportsReadDirPlus: false, out _);
        Assert.False(((FuseInitFlags)reply.Flags).HasFlag(FuseInitFlags.DoReaddirplus));
        Assert.False(((FuseInitFlags)reply.Flags).HasFlag(FuseInitFlags.ReaddirplusAuto));
    }
}
