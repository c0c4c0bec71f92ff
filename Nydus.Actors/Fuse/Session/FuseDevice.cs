using Microsoft.Win32.SafeHandles;

namespace Nydus.Actors.Fuse.Session;

/// <summary>
/// An open /dev/fuse connection and where it is mounted. Owns the descriptor: disposing closes it (which,
/// if no other copy exists, ends the kernel connection); it never unmounts.
/// </summary>
public sealed class FuseDevice : IDisposable
{
    public FuseDevice(SafeFileHandle handle, string mountPoint)
    {
        Handle = handle;
        MountPoint = mountPoint;
    }

    /// <summary>The /dev/fuse descriptor the session reads requests from.</summary>
    public SafeFileHandle Handle { get; }

    public string MountPoint { get; }

    /// <summary>Descriptor number, e.g. for sending it to another process.</summary>
    public int FileDescriptor => (int)Handle.DangerousGetHandle();

    public void Dispose() => Handle.Dispose();
}
