namespace Nydus.Actors.Rafs;

/// <summary>
/// A malformed or unsupported image. Thrown by <see cref="RafsImage.Open"/> (the mount fails; supervisors stop
/// the mount actor rather than retry) and by inode operations that meet corrupt metadata (the FUSE layer answers
/// EIO, or ENOENT for <see cref="RafsErrorKind.NoSuchInode"/>). Messages name the file and the field.
/// </summary>
public sealed class RafsException : Exception
{
    public RafsException(RafsErrorKind kind, string message, Exception? inner = null)
        : base(message, inner)
    {
        Kind = kind;
    }

    public RafsErrorKind Kind { get; }
}
