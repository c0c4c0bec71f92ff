namespace Nydus.Actors.Rafs;

/// <summary>Why an image could not be opened or an inode could not be served.</summary>
public enum RafsErrorKind
{
    /// <summary>The bootstrap file could not be read from disk.</summary>
    IoError,

    /// <summary>Neither a RAFS v5 nor an EROFS magic where they belong.</summary>
    InvalidMagic,

    /// <summary>A known format in a version or with features this reader does not handle.</summary>
    Unsupported,

    /// <summary>A structure or offset lies past the end of the bootstrap.</summary>
    OutOfBounds,

    /// <summary>A superblock or table field has a value the format does not allow.</summary>
    InvalidSuperBlock,

    /// <summary>An inode record is malformed (bad format bits, sizes, or a type that does not fit the request).</summary>
    InvalidInode,

    /// <summary>Directory data is malformed (dirent offsets, names, self references).</summary>
    InvalidDirectory,

    /// <summary>A chunk record or chunk index points outside the blob or chunk tables.</summary>
    InvalidChunk,

    /// <summary>The blob's chunk-info array (blob meta) is missing or does not match the blob table.</summary>
    InvalidBlobMeta,

    /// <summary>The inode number is not one this image hands out.</summary>
    NoSuchInode,
}
