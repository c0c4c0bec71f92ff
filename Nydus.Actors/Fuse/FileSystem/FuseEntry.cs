using Nydus.Actors.Fuse.Abi;

namespace Nydus.Actors.Fuse.FileSystem;

/// <summary>
/// A looked-up node: what LOOKUP and the creating operations answer. Every entry with a non-zero
/// <see cref="NodeId"/> handed to the kernel is one lookup reference the kernel later returns with FORGET.
/// </summary>
public struct FuseEntry
{
    public ulong NodeId;

    /// <summary>Distinguishes reuses of one node id; (NodeId, Generation) must be unique for the mount's lifetime.</summary>
    public ulong Generation;

    public FuseAttr Attr;

    /// <summary>How long the kernel may cache the name-to-node mapping.</summary>
    public TimeSpan EntryTimeout;

    /// <summary>How long the kernel may cache <see cref="Attr"/>.</summary>
    public TimeSpan AttrTimeout;
}
