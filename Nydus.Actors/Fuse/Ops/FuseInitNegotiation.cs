using Nydus.Actors.Fuse.Abi;
using Nydus.Actors.Fuse.FileSystem;

namespace Nydus.Actors.Fuse.Ops;

/// <summary>Answers FUSE_INIT: settles protocol version, sizes and capability flags.</summary>
public static class FuseInitNegotiation
{
    private const uint PageSize = 4096;

    /// <summary>The kernel's cap on pages per request (FUSE_MAX_MAX_PAGES).</summary>
    private const uint KernelMaxPages = 256;

    /// <summary>Pages per request when MAX_PAGES is not negotiated (FUSE_DEFAULT_MAX_PAGES_PER_REQ).</summary>
    private const uint DefaultMaxPages = 32;

    /// <summary>Builds the INIT reply for the kernel's offer.</summary>
    /// <param name="offer">The kernel's fuse_init_in (flags2 only counted when it set INIT_EXT).</param>
    /// <param name="options">What this server wants.</param>
    /// <param name="supportsReadDirPlus">False drops the READDIRPLUS flags whatever the options say.</param>
    /// <param name="connection">What was agreed, for the file system and the session.</param>
    public static FuseInitOut Negotiate(in FuseInitIn offer, FuseInitOptions options, bool supportsReadDirPlus, out FuseConnectionInfo connection)
    {
        FuseInitFlags offered = (FuseInitFlags)offer.Flags;
        if ((offered & FuseInitFlags.InitExt) != 0)
        {
            offered |= (FuseInitFlags)((ulong)offer.Flags2 << 32);
        }

        FuseInitFlags wanted = options.WantedFlags;
        if (!supportsReadDirPlus)
        {
            wanted &= ~(FuseInitFlags.DoReaddirplus | FuseInitFlags.ReaddirplusAuto);
        }

        FuseInitFlags granted = offered & wanted;
        if ((granted & FuseInitFlags.WritebackCache) != 0 || options.MaxStackDepth == 0)
        {
            // The kernel turns passthrough off beside the writeback cache, and without a stack depth.
            granted &= ~FuseInitFlags.Passthrough;
        }

        uint minor = Math.Min(offer.Minor, FuseProtocol.KernelMinor);

        uint maxPages = (granted & FuseInitFlags.MaxPages) != 0
            ? Math.Clamp((options.MaxWrite + PageSize - 1) / PageSize, 1, KernelMaxPages)
            : DefaultMaxPages;
        uint maxWrite = Math.Max(PageSize, Math.Min(options.MaxWrite, maxPages * PageSize));

        var reply = new FuseInitOut
        {
            Major = FuseProtocol.KernelMajor,
            Minor = minor,
            MaxReadahead = Math.Min(offer.MaxReadahead, options.MaxReadahead),
            Flags = (uint)granted,
            Flags2 = (uint)((ulong)granted >> 32),
            MaxBackground = options.MaxBackground,
            CongestionThreshold = options.CongestionThreshold,
            MaxWrite = maxWrite,
            TimeGran = 1,
            MaxPages = (ushort)maxPages,
            MaxStackDepth = (granted & FuseInitFlags.Passthrough) != 0 ? options.MaxStackDepth : 0,
        };

        connection = new FuseConnectionInfo(minor, offered, granted, maxWrite, reply.MaxReadahead, (ushort)maxPages);
        return reply;
    }
}
