using Nydus.Actors.Fuse.Abi;

namespace Nydus.Actors.Fuse.Ops;

/// <summary>
/// What this server asks for in INIT. The kernel grants the intersection of its offer and
/// <see cref="WantedFlags"/>; sizes are clamped to what the kernel allows.
/// </summary>
public sealed record FuseInitOptions
{
    /// <summary>Largest WRITE payload (and READ size, via max_read) this server accepts. 1 MiB = 256 pages.</summary>
    public uint MaxWrite { get; init; } = 1024 * 1024;

    /// <summary>Upper bound for the readahead window; the kernel's offer is used when smaller.</summary>
    public uint MaxReadahead { get; init; } = 1024 * 1024;

    /// <summary>Background (async read, readahead) requests in flight before the kernel throttles.</summary>
    public ushort MaxBackground { get; init; } = 64;

    public ushort CongestionThreshold { get; init; } = 48;

    public FuseInitFlags WantedFlags { get; init; } = ReadOnlyImageFlags;

    /// <summary>max_stack_depth for FUSE_PASSTHROUGH (1: backing files on unstacked file systems); 0 without it.</summary>
    public uint MaxStackDepth { get; init; }

    /// <summary>
    /// What a read-mostly image server wants: parallel async reads and lookups, readdirplus to save the
    /// per-entry LOOKUP, cached symlink targets, NFS export (LOOKUP of "." and ".."), big requests.
    /// </summary>
    public const FuseInitFlags ReadOnlyImageFlags =
        FuseInitFlags.AsyncRead | FuseInitFlags.ParallelDirops | FuseInitFlags.DoReaddirplus |
        FuseInitFlags.ReaddirplusAuto | FuseInitFlags.CacheSymlinks | FuseInitFlags.ExportSupport |
        FuseInitFlags.BigWrites | FuseInitFlags.MaxPages | FuseInitFlags.AsyncDio | FuseInitFlags.InitExt |
        FuseInitFlags.HasResend;

    /// <summary>
    /// A writable passthrough additionally wants the kernel to keep the page cache coherent with host changes
    /// (AUTO_INVAL_DATA). Symlink caching is dropped because the host may retarget links behind the mount's back.
    /// ATOMIC_O_TRUNC is not asked for: with it the kernel skips the SETATTR of an O_TRUNC open, and with that SETATTR
    /// the clearing of suid/sgid that a caller without CAP_FSETID owes (measured: `: > file` by uid 65534 left a
    /// 6777 file 6777, where ext4 itself gives 0777); the daemon, running as root, cannot tell who lacks CAP_FSETID.
    /// Without it an O_TRUNC open is OPEN then SETATTR (mode and size 0), the kernel's own rule. HANDLE_KILLPRIV_V2
    /// would tell the daemon instead, but the kernel then leaves suid/sgid to the daemon on every write, and writes
    /// through kernel passthrough never reach it (measured: suid/sgid kept after a write by uid 65534).
    /// </summary>
    public const FuseInitFlags WritablePassthroughFlags =
        (ReadOnlyImageFlags & ~FuseInitFlags.CacheSymlinks) | FuseInitFlags.AutoInvalData;

    /// <summary>Options for a read-only image (RAFS) or read-only passthrough.</summary>
    public static FuseInitOptions ReadOnlyImage { get; } = new();

    /// <summary>
    /// Options for a read-only passthrough: an image's, plus kernel passthrough of open files' reads to their host
    /// files when <paramref name="kernelPassthrough"/> (Linux 6.9+, granted only where the kernel offers it).
    /// </summary>
    public static FuseInitOptions ReadOnlyPassthrough(bool kernelPassthrough = true) => kernelPassthrough
        ? new FuseInitOptions { WantedFlags = ReadOnlyImageFlags | FuseInitFlags.Passthrough, MaxStackDepth = 1 }
        : ReadOnlyImage;

    /// <summary>Options for a writable passthrough.</summary>
    /// <param name="writebackCache">Let the kernel buffer writes (faster, but the host sees them late). The kernel
    /// then refuses passthrough.</param>
    /// <param name="posixAcl">Let the kernel enforce POSIX ACLs from system.posix_acl_* xattrs (off by default).</param>
    /// <param name="kernelPassthrough">Ask for FUSE_PASSTHROUGH: reads and writes of open files go from the kernel
    /// to the host file without this server (Linux 6.9+, needs CAP_SYS_ADMIN).</param>
    public static FuseInitOptions WritablePassthrough(bool writebackCache = false, bool posixAcl = false, bool kernelPassthrough = true)
    {
        FuseInitFlags flags = WritablePassthroughFlags;
        if (kernelPassthrough && !writebackCache)
        {
            flags |= FuseInitFlags.Passthrough;
        }

        if (writebackCache)
        {
            flags |= FuseInitFlags.WritebackCache;
        }

        if (posixAcl)
        {
            flags |= FuseInitFlags.PosixAcl;
        }

        return new FuseInitOptions { WantedFlags = flags, MaxStackDepth = (flags & FuseInitFlags.Passthrough) != 0 ? 1u : 0u };
    }
}
