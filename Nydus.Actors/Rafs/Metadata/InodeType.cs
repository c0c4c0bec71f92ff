namespace Nydus.Actors.Rafs.Metadata;

/// <summary>File type, valued as <c>d_type</c> (DT_*, = S_IFMT &gt;&gt; 12) so FUSE readdir can use it as is.</summary>
public enum InodeType : byte
{
    Unknown = 0,
    Fifo = 1,
    CharDevice = 2,
    Directory = 4,
    BlockDevice = 6,
    Regular = 8,
    Symlink = 10,
    Socket = 12,
}
