namespace Nydus.Actors.Storage;

/// <summary>Why a blob read failed. The FUSE layer maps every kind to EIO; the kind is for logs and metrics.</summary>
public enum StorageErrorKind
{
    /// <summary>The backend has no blob with the requested id (no file in any configured directory).</summary>
    BlobNotFound,

    /// <summary>The blob exists but is shorter than a chunk the image points into.</summary>
    BlobTooShort,

    /// <summary>An I/O error from the operating system while reading the blob.</summary>
    IoError,

    /// <summary>Chunk data could not be decompressed to its recorded size.</summary>
    DecompressionFailed,

    /// <summary>The decompressed chunk does not match its recorded digest or CRC32C.</summary>
    DigestMismatch,

    /// <summary>The image asks for a feature this reader does not implement (encryption, zran, batch chunks).</summary>
    Unsupported,

    /// <summary>A remote backend could not be reached or did not answer in time (after its retries).</summary>
    BackendUnavailable,

    /// <summary>A remote backend refused the credentials (HTTP 401/403 after the auth flow).</summary>
    AccessDenied,

    /// <summary>A remote backend answered with something unusable: truncated body, wrong range, bad status.</summary>
    BadResponse,
}
