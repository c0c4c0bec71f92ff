namespace Nydus.Actors.Storage;

/// <summary>
/// A failed read of blob data. Only the request that touched the bad chunk fails: the image stays usable,
/// so supervisors must not restart anything for it. The FUSE layer answers EIO and logs the message,
/// which always names the blob and, where known, the chunk.
/// </summary>
public sealed class StorageException : Exception
{
    public StorageException(StorageErrorKind kind, string message, Exception? inner = null)
        : base(message, inner)
    {
        Kind = kind;
    }

    public StorageErrorKind Kind { get; }
}
