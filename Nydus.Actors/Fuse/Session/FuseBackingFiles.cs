using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;
using Nydus.Actors.Interop;

namespace Nydus.Actors.Fuse.Session;

/// <summary>
/// Registers host files with the kernel for FUSE passthrough (Linux 6.9+): FUSE_DEV_IOC_BACKING_OPEN on the session's
/// /dev/fuse descriptor gives a backing id that an OPEN or CREATE reply names with FOPEN_PASSTHROUGH; the kernel then
/// reads and writes that file itself and never asks this server. The kernel opens its own backing file at the open
/// (with the caller's open flags and the credentials of the registering process), so an id only has to live until the
/// last open that named it is released. Needs CAP_SYS_ADMIN; a backing file on a stacked file system (overlayfs)
/// beyond the negotiated max_stack_depth is refused (ELOOP). Safe from any thread.
/// </summary>
public sealed partial class FuseBackingFiles
{
    // _IOW(229, 1, struct fuse_backing_map) and _IOW(229, 2, uint32_t): direction write (1 << 30), size << 16, magic << 8, nr.
    private const uint BackingOpen = (1u << 30) | (16u << 16) | (229u << 8) | 1;
    private const uint BackingClose = (1u << 30) | (4u << 16) | (229u << 8) | 2;

    private readonly SafeFileHandle _device;

    public FuseBackingFiles(SafeFileHandle device) => _device = device;

    /// <summary>struct fuse_backing_map.</summary>
    [StructLayout(LayoutKind.Sequential)]
    private struct BackingMap
    {
        public int Fd;
        public uint Flags;
        public ulong Padding;
    }

    [LibraryImport("libc", EntryPoint = "ioctl", SetLastError = true)]
    private static partial int IoctlMap(SafeFileHandle fd, nuint request, ref BackingMap map);

    [LibraryImport("libc", EntryPoint = "ioctl", SetLastError = true)]
    private static partial int IoctlId(SafeFileHandle fd, nuint request, ref uint id);

    /// <summary>Registers <paramref name="file"/> (any descriptor of the host file).</summary>
    /// <param name="backingId">The id to answer with FOPEN_PASSTHROUGH (above 0).</param>
    /// <returns>Success, or the ioctl's errno (EPERM: not allowed or not negotiated; ELOOP: stacked too deep).</returns>
    public Errno Open(SafeFileHandle file, out int backingId)
    {
        var map = new BackingMap { Fd = (int)file.DangerousGetHandle() };
        bool added = false;
        try
        {
            file.DangerousAddRef(ref added);
            int result = IoctlMap(_device, BackingOpen, ref map);
            backingId = result > 0 ? result : 0;
            return result > 0 ? Errno.Success : Libc.LastErrno;
        }
        finally
        {
            if (added) file.DangerousRelease();
        }
    }

    /// <summary>Drops a registration; open files that named it keep their backing file.</summary>
    public Errno Close(int backingId)
    {
        uint id = (uint)backingId;
        return IoctlId(_device, BackingClose, ref id) < 0 ? Libc.LastErrno : Errno.Success;
    }
}
