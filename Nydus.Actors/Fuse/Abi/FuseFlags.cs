namespace Nydus.Actors.Fuse.Abi;

/// <summary>
/// INIT capability flags (flags | flags2 &lt;&lt; 32). Names follow linux/fuse.h without the FUSE_ prefix;
/// the bits above 35 come from the kernel's protocol 7.39 to 7.40 additions (e.g. HAS_RESEND).
/// </summary>
[Flags]
public enum FuseInitFlags : ulong
{
    None = 0,
    AsyncRead = 1UL << 0,
    PosixLocks = 1UL << 1,
    FileOps = 1UL << 2,
    AtomicOTrunc = 1UL << 3,
    ExportSupport = 1UL << 4,
    BigWrites = 1UL << 5,
    DontMask = 1UL << 6,
    SpliceWrite = 1UL << 7,
    SpliceMove = 1UL << 8,
    SpliceRead = 1UL << 9,
    FlockLocks = 1UL << 10,
    HasIoctlDir = 1UL << 11,
    AutoInvalData = 1UL << 12,
    DoReaddirplus = 1UL << 13,
    ReaddirplusAuto = 1UL << 14,
    AsyncDio = 1UL << 15,
    WritebackCache = 1UL << 16,
    NoOpenSupport = 1UL << 17,
    ParallelDirops = 1UL << 18,
    HandleKillpriv = 1UL << 19,
    PosixAcl = 1UL << 20,
    AbortError = 1UL << 21,
    MaxPages = 1UL << 22,
    CacheSymlinks = 1UL << 23,
    NoOpendirSupport = 1UL << 24,
    ExplicitInvalData = 1UL << 25,
    MapAlignment = 1UL << 26,
    Submounts = 1UL << 27,
    HandleKillprivV2 = 1UL << 28,
    SetxattrExt = 1UL << 29,
    InitExt = 1UL << 30,
    InitReserved = 1UL << 31,
    SecurityCtx = 1UL << 32,
    HasInodeDax = 1UL << 33,
    CreateSuppGroup = 1UL << 34,
    HasExpireOnly = 1UL << 35,
    DirectIoAllowMmap = 1UL << 36,
    Passthrough = 1UL << 37,
    NoExportSupport = 1UL << 38,
    HasResend = 1UL << 39,
}

/// <summary>fuse_open_out.open_flags (FOPEN_*).</summary>
[Flags]
public enum FuseOpenFlags : uint
{
    None = 0,
    DirectIo = 1 << 0,
    KeepCache = 1 << 1,
    NonSeekable = 1 << 2,
    CacheDir = 1 << 3,
    Stream = 1 << 4,
    NoFlush = 1 << 5,
    ParallelDirectWrites = 1 << 6,

    /// <summary>Reads and writes go straight to the backing file named by fuse_open_out.backing_id (Linux 6.9+).</summary>
    Passthrough = 1 << 7,
}

/// <summary>fuse_setattr_in.valid (FATTR_*): which fields of a SETATTR request are meaningful.</summary>
[Flags]
public enum FuseSetAttrValid : uint
{
    None = 0,
    Mode = 1 << 0,
    Uid = 1 << 1,
    Gid = 1 << 2,
    Size = 1 << 3,
    Atime = 1 << 4,
    Mtime = 1 << 5,
    Handle = 1 << 6,
    AtimeNow = 1 << 7,
    MtimeNow = 1 << 8,
    LockOwner = 1 << 9,
    Ctime = 1 << 10,
    KillSuidGid = 1 << 11,
}

/// <summary>Notification codes a server writes with unique = 0 (enum fuse_notify_code, plus RESEND from 7.40).</summary>
public enum FuseNotifyCode
{
    Poll = 1,
    InvalInode = 2,
    InvalEntry = 3,
    Store = 4,
    Retrieve = 5,
    Delete = 6,
    Resend = 7,
}

/// <summary>Constants of the protocol that are not flags.</summary>
public static class FuseProtocol
{
    public const uint KernelMajor = 7;

    /// <summary>Protocol minor this server speaks: 7.40 brings FUSE_NOTIFY_RESEND and FUSE_HAS_RESEND.</summary>
    public const uint KernelMinor = 40;

    public const ulong RootId = 1;

    /// <summary>Bit 63 of <c>unique</c> marks a request the kernel resent after NOTIFY_RESEND (FUSE_UNIQUE_RESEND).</summary>
    public const ulong UniqueResendBit = 1UL << 63;

    /// <summary>FUSE_GETATTR_FH: getattr_in.fh is valid.</summary>
    public const uint GetAttrFh = 1;

    /// <summary>FUSE_FSYNC_FDATASYNC.</summary>
    public const uint FsyncFdatasync = 1;

    /// <summary>The kernel refuses a read buffer below this size (FUSE_MIN_READ_BUFFER).</summary>
    public const int MinReadBuffer = 8192;

    /// <summary>Room for the request header and the largest fixed request struct in front of WRITE data.</summary>
    public const int HeaderRoom = 4096;
}
