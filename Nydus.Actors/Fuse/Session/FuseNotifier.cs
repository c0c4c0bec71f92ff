using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;
using Nydus.Actors.Fuse.Abi;
using Nydus.Actors.Interop;

namespace Nydus.Actors.Fuse.Session;

/// <summary>
/// Writes notifications to the kernel on the session descriptor (fuse_out_header with unique = 0 and
/// error = the notify code). Safe from any thread. Do not invalidate an entry from inside a request on
/// the same directory: the kernel holds the directory lock the notification needs.
/// </summary>
public sealed class FuseNotifier
{
    private const int NameMax = 255;

    private readonly SafeFileHandle _device;

    /// <summary>FUSE_EXPIRE_ONLY in fuse_notify_inval_entry_out.flags.</summary>
    private const uint ExpireOnly = 1;

    public FuseNotifier(SafeFileHandle device) => _device = device;

    /// <summary>Drops cached attributes and, for <paramref name="length"/> != 0, cached data of a node (NOTIFY_INVAL_INODE).</summary>
    /// <param name="offset">Start of the data range; negative drops attributes only.</param>
    /// <param name="length">Bytes to drop; 0 means to the end of the file.</param>
    /// <returns>Success, or the errno of the write (ENOENT: the kernel does not know the node).</returns>
    public Errno InvalidateInode(ulong nodeId, long offset = 0, long length = 0)
    {
        Span<byte> message = stackalloc byte[Unsafe.SizeOf<FuseOutHeader>() + Unsafe.SizeOf<FuseNotifyInvalInodeOut>()];
        var body = new FuseNotifyInvalInodeOut { Ino = nodeId, Offset = offset, Length = length };
        MemoryMarshal.Write(message[Unsafe.SizeOf<FuseOutHeader>()..], in body);
        return Send(FuseNotifyCode.InvalInode, message);
    }

    /// <summary>Drops the cached dentry <paramref name="name"/> in <paramref name="parent"/> (NOTIFY_INVAL_ENTRY).</summary>
    /// <param name="expireOnly">FUSE_EXPIRE_ONLY (protocol 7.38): only ends the entry's timeout, so the next use looks it
    /// up again, instead of dropping the dentry and its subtree (which also detaches mounts made below it).</param>
    public Errno InvalidateEntry(ulong parent, ReadOnlySpan<byte> name, bool expireOnly = false)
    {
        if (name.Length > NameMax)
        {
            return Errno.ENAMETOOLONG;
        }

        int headerSize = Unsafe.SizeOf<FuseOutHeader>();
        int bodySize = Unsafe.SizeOf<FuseNotifyInvalEntryOut>();
        Span<byte> message = stackalloc byte[headerSize + bodySize + name.Length + 1];
        var body = new FuseNotifyInvalEntryOut { Parent = parent, NameLength = (uint)name.Length, Flags = expireOnly ? ExpireOnly : 0 };
        MemoryMarshal.Write(message[headerSize..], in body);
        name.CopyTo(message[(headerSize + bodySize)..]);
        message[^1] = 0;
        return Send(FuseNotifyCode.InvalEntry, message);
    }

    /// <summary>
    /// Asks the kernel to queue again every request it sent but got no reply for (NOTIFY_RESEND, protocol
    /// 7.40, needs FUSE_HAS_RESEND). A new server taking over a connection sends this first.
    /// </summary>
    public Errno Resend()
    {
        Span<byte> message = stackalloc byte[Unsafe.SizeOf<FuseOutHeader>()];
        return Send(FuseNotifyCode.Resend, message);
    }

    private Errno Send(FuseNotifyCode code, Span<byte> message)
    {
        var header = new FuseOutHeader { Length = (uint)message.Length, Error = (int)code, Unique = 0 };
        MemoryMarshal.Write(message, in header);
        return Libc.WriteFrom(_device, message) < 0 ? Libc.LastErrno : Errno.Success;
    }
}
