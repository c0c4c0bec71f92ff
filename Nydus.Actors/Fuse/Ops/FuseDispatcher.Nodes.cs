using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Nydus.Actors.Fuse.Abi;
using Nydus.Actors.Fuse.FileSystem;
using Nydus.Actors.Interop;

namespace Nydus.Actors.Fuse.Ops;

// Name and inode operations: LOOKUP, GETATTR, SETATTR, READLINK and the ones that create or remove names.
public sealed partial class FuseDispatcher
{
    private int Lookup(in FuseContext context, ref FuseRequestReader body, Span<byte> reply)
    {
        if (!body.TryReadName(out ReadOnlySpan<byte> name))
        {
            return Invalid(in context, reply);
        }

        Errno errno = _fileSystem.Lookup(in context, context.NodeId, name, out FuseEntry entry);
        return EntryReply(in context, reply, errno, in entry);
    }

    private int GetAttr(in FuseContext context, ref FuseRequestReader body, Span<byte> reply)
    {
        ulong? handle = null;
        if (body.TryRead(out FuseGetAttrIn input) && (input.GetAttrFlags & FuseProtocol.GetAttrFh) != 0)
        {
            handle = input.Fh;
        }

        Errno errno = _fileSystem.GetAttr(in context, context.NodeId, handle, out FuseAttr attr, out TimeSpan timeout);
        return AttrReply(in context, reply, errno, in attr, timeout);
    }

    private int SetAttr(in FuseContext context, ref FuseRequestReader body, Span<byte> reply)
    {
        if (!body.TryRead(out FuseSetAttrIn changes))
        {
            return Invalid(in context, reply);
        }

        Errno errno = _fileSystem.SetAttr(in context, context.NodeId, in changes, out FuseAttr attr, out TimeSpan timeout);
        return AttrReply(in context, reply, errno, in attr, timeout);
    }

    private int ReadLink(in FuseContext context, Span<byte> reply)
    {
        Span<byte> target = FuseReplyWriter.Body(reply)[..Math.Min(4096, reply.Length - FuseReplyWriter.HeaderSize)];
        Errno errno = _fileSystem.ReadLink(in context, context.NodeId, target, out int length);
        return errno == Errno.Success
            ? FuseReplyWriter.Complete(reply, context.Unique, length)
            : FuseReplyWriter.Error(reply, context.Unique, errno);
    }

    private int Symlink(in FuseContext context, ref FuseRequestReader body, Span<byte> reply)
    {
        // SYMLINK carries the new name first, then the link target.
        if (!body.TryReadName(out ReadOnlySpan<byte> name) || !body.TryReadName(out ReadOnlySpan<byte> target))
        {
            return Invalid(in context, reply);
        }

        Errno errno = _fileSystem.Symlink(in context, context.NodeId, name, target, out FuseEntry entry);
        return EntryReply(in context, reply, errno, in entry);
    }

    private int Mknod(in FuseContext context, ref FuseRequestReader body, Span<byte> reply)
    {
        if (!body.TryRead(out FuseMknodIn input) || !body.TryReadName(out ReadOnlySpan<byte> name))
        {
            return Invalid(in context, reply);
        }

        Errno errno = _fileSystem.Mknod(in context, context.NodeId, name, input.Mode, input.Rdev, input.Umask, out FuseEntry entry);
        return EntryReply(in context, reply, errno, in entry);
    }

    private int Mkdir(in FuseContext context, ref FuseRequestReader body, Span<byte> reply)
    {
        if (!body.TryRead(out FuseMkdirIn input) || !body.TryReadName(out ReadOnlySpan<byte> name))
        {
            return Invalid(in context, reply);
        }

        Errno errno = _fileSystem.Mkdir(in context, context.NodeId, name, input.Mode, input.Umask, out FuseEntry entry);
        return EntryReply(in context, reply, errno, in entry);
    }

    private int Unlink(in FuseContext context, ref FuseRequestReader body, Span<byte> reply, bool directory)
    {
        if (!body.TryReadName(out ReadOnlySpan<byte> name))
        {
            return Invalid(in context, reply);
        }

        Errno errno = directory
            ? _fileSystem.Rmdir(in context, context.NodeId, name)
            : _fileSystem.Unlink(in context, context.NodeId, name);
        return Status(in context, reply, errno);
    }

    private int Rename(in FuseContext context, ref FuseRequestReader body, Span<byte> reply, bool extended)
    {
        ulong newParent;
        uint flags = 0;
        if (extended)
        {
            if (!body.TryRead(out FuseRename2In input))
            {
                return Invalid(in context, reply);
            }

            newParent = input.NewDir;
            flags = input.Flags;
        }
        else
        {
            if (!body.TryRead(out FuseRenameIn input))
            {
                return Invalid(in context, reply);
            }

            newParent = input.NewDir;
        }

        if (!body.TryReadName(out ReadOnlySpan<byte> name) || !body.TryReadName(out ReadOnlySpan<byte> newName))
        {
            return Invalid(in context, reply);
        }

        return Status(in context, reply, _fileSystem.Rename(in context, context.NodeId, name, newParent, newName, flags));
    }

    private int Link(in FuseContext context, ref FuseRequestReader body, Span<byte> reply)
    {
        if (!body.TryRead(out FuseLinkIn input) || !body.TryReadName(out ReadOnlySpan<byte> newName))
        {
            return Invalid(in context, reply);
        }

        // The request's node id is the new parent; the existing node travels in the body.
        Errno errno = _fileSystem.Link(in context, input.OldNodeId, context.NodeId, newName, out FuseEntry entry);
        return EntryReply(in context, reply, errno, in entry);
    }

    private int Create(in FuseContext context, ref FuseRequestReader body, Span<byte> reply)
    {
        if (!body.TryRead(out FuseCreateIn input) || !body.TryReadName(out ReadOnlySpan<byte> name))
        {
            return Invalid(in context, reply);
        }

        Errno errno = _fileSystem.Create(in context, context.NodeId, name, input.Mode, input.Umask, input.Flags, out FuseEntry entry, out FuseOpenResult open);
        if (errno != Errno.Success)
        {
            return FuseReplyWriter.Error(reply, context.Unique, errno);
        }

        // CREATE answers fuse_entry_out followed by fuse_open_out.
        var entryOut = default(FuseEntryOut);
        FuseReplyWriter.FillEntryOut(ref entryOut, in entry);
        var openOut = new FuseOpenOut { Fh = open.Handle, OpenFlags = open.Flags, BackingId = open.BackingId };
        Span<byte> output = FuseReplyWriter.Body(reply);
        MemoryMarshal.Write(output, in entryOut);
        int entrySize = Unsafe.SizeOf<FuseEntryOut>();
        MemoryMarshal.Write(output[entrySize..], in openOut);
        return FuseReplyWriter.Complete(reply, context.Unique, entrySize + Unsafe.SizeOf<FuseOpenOut>());
    }

    private int Access(in FuseContext context, ref FuseRequestReader body, Span<byte> reply)
    {
        if (!body.TryRead(out FuseAccessIn input))
        {
            return Invalid(in context, reply);
        }

        return Status(in context, reply, _fileSystem.Access(in context, context.NodeId, input.Mask));
    }

    private int StatFs(in FuseContext context, Span<byte> reply)
    {
        Errno errno = _fileSystem.StatFs(in context, context.NodeId, out FuseKstatfs stat);
        if (errno != Errno.Success)
        {
            return FuseReplyWriter.Error(reply, context.Unique, errno);
        }

        var output = new FuseStatFsOut { St = stat };
        return FuseReplyWriter.Struct(reply, context.Unique, in output);
    }
}
