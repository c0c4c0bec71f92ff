using Nydus.Actors.Interop;

namespace Nydus.Actors.Fuse;

/// <summary>The FUSE subsystem's one exception type; <see cref="Kind"/> says what failed, <see cref="Errno"/> why.</summary>
public sealed class FuseException : Exception
{
    public FuseException(FuseErrorKind kind, Errno errno, string message, Exception? inner = null)
        : base(message, inner)
    {
        Kind = kind;
        Errno = errno;
    }

    public FuseErrorKind Kind { get; }

    public Errno Errno { get; }
}
