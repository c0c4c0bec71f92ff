using Nydus.Actors.Fuse.Abi;

namespace Nydus.Actors.Fuse.FileSystem;

/// <summary>What OPEN, OPENDIR and CREATE answer: the file system's handle and the FOPEN_* flags it wants.</summary>
public struct FuseOpenResult
{
    public ulong Handle;
    public FuseOpenFlags Flags;

    /// <summary>With <see cref="FuseOpenFlags.Passthrough"/>: the registered backing file (see FuseBackingFiles).</summary>
    public int BackingId;
}
