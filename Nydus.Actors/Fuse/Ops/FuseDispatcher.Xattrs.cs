using Nydus.Actors.Fuse.Abi;
using Nydus.Actors.Fuse.FileSystem;
using Nydus.Actors.Interop;

namespace Nydus.Actors.Fuse.Ops;

// Extended attributes. GETXATTR and LISTXATTR with size 0 are size probes answered with fuse_getxattr_out.
public sealed partial class FuseDispatcher
{
    private int SetXattr(in FuseContext context, ref FuseRequestReader body, Span<byte> reply)
    {
        bool extended = Connection is { } connection && (connection.Flags & FuseInitFlags.SetxattrExt) != 0;
        FuseSetXattrIn input;
        bool parsed = extended ? body.TryRead(out input) : body.TryReadTruncated(FuseSetXattrIn.CompatSize, out input);
        if (!parsed || !body.TryReadName(out ReadOnlySpan<byte> name) || !body.TryReadBytes((int)input.Size, out ReadOnlySpan<byte> value))
        {
            return Invalid(in context, reply);
        }

        return Status(in context, reply, _fileSystem.SetXattr(in context, context.NodeId, name, value, input.Flags));
    }

    private int GetXattr(in FuseContext context, ref FuseRequestReader body, Span<byte> reply)
    {
        if (!body.TryRead(out FuseGetXattrIn input) || !body.TryReadName(out ReadOnlySpan<byte> name))
        {
            return Invalid(in context, reply);
        }

        Span<byte> output = FuseReplyWriter.Body(reply);
        Span<byte> value = input.Size == 0 ? Span<byte>.Empty : output[..(int)Math.Min(input.Size, (uint)output.Length)];
        Errno errno = _fileSystem.GetXattr(in context, context.NodeId, name, value, out int size);
        return SizedReply(in context, reply, errno, input.Size, size);
    }

    private int ListXattr(in FuseContext context, ref FuseRequestReader body, Span<byte> reply)
    {
        if (!body.TryRead(out FuseGetXattrIn input))
        {
            return Invalid(in context, reply);
        }

        Span<byte> output = FuseReplyWriter.Body(reply);
        Span<byte> list = input.Size == 0 ? Span<byte>.Empty : output[..(int)Math.Min(input.Size, (uint)output.Length)];
        Errno errno = _fileSystem.ListXattr(in context, context.NodeId, list, out int size);
        return SizedReply(in context, reply, errno, input.Size, size);
    }

    private int RemoveXattr(in FuseContext context, ref FuseRequestReader body, Span<byte> reply)
    {
        if (!body.TryReadName(out ReadOnlySpan<byte> name))
        {
            return Invalid(in context, reply);
        }

        return Status(in context, reply, _fileSystem.RemoveXattr(in context, context.NodeId, name));
    }

    private static int SizedReply(in FuseContext context, Span<byte> reply, Errno errno, uint requested, int size)
    {
        if (errno != Errno.Success)
        {
            return FuseReplyWriter.Error(reply, context.Unique, errno);
        }

        if (requested == 0)
        {
            var probe = new FuseGetXattrOut { Size = (uint)size };
            return FuseReplyWriter.Struct(reply, context.Unique, in probe);
        }

        if ((uint)size > requested)
        {
            return FuseReplyWriter.Error(reply, context.Unique, Errno.ERANGE);
        }

        return FuseReplyWriter.Complete(reply, context.Unique, size);
    }
}
