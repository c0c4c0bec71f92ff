namespace Nydus.Actors.Rafs.Metadata;

/// <summary>The attributes of one inode as the image stores them (getattr).</summary>
public readonly record struct InodeAttr
{
    public required ulong Ino { get; init; }

    /// <summary>Full st_mode: type bits and permission bits.</summary>
    public required uint Mode { get; init; }

    public required uint Uid { get; init; }

    public required uint Gid { get; init; }

    public required ulong Size { get; init; }

    public required uint NLink { get; init; }

    public required long MtimeSeconds { get; init; }

    public required uint MtimeNanoseconds { get; init; }

    /// <summary>Device number of char/block devices in Linux's "new" dev_t encoding (what FUSE expects).</summary>
    public required uint Rdev { get; init; }

    /// <summary>Number of 512-byte blocks.</summary>
    public required ulong Blocks { get; init; }

    public InodeType Type => (InodeType)((Mode >> 12) & 0xF);

    public const uint BlockSize = 4096;
}
