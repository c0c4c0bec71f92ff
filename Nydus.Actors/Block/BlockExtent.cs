namespace Nydus.Actors.Block;

/// <summary>What a run of blocks of a <see cref="BlockAddressSpace"/> is made of.</summary>
public enum BlockExtentKind
{
    /// <summary>The image's metadata blob (bootstrap): the EROFS superblock, inodes, directories.</summary>
    Metadata,

    /// <summary>A data blob (RAFS v6) or extra device (plain EROFS) at its mapped block address.</summary>
    Data,

    /// <summary>Blocks no blob covers (alignment between blobs): always zero, never stored.</summary>
    Hole,
}

/// <summary>A run of <see cref="BlockCount"/> blocks from <see cref="StartBlock"/>.</summary>
/// <param name="Name">The blob id or device file for data, the bootstrap path for metadata.</param>
public sealed record BlockExtent(long StartBlock, long BlockCount, BlockExtentKind Kind, string Name)
{
    public long EndBlock => StartBlock + BlockCount;
}
