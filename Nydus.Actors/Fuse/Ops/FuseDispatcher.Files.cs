using Nydus.Actors.Fuse.Abi;
using Nydus.Actors.Fuse.FileSystem;
using Nydus.Actors.Interop;

namespace Nydus.Actors.Fuse.Ops;

// Open files and directories: OPEN(DIR), READ, WRITE, RELEASE(DIR), FLUSH, FSYNC(DIR), READDIR(PLUS),
// FALLOCATE, LSEEK, COPY_FILE_RANGE.
public sealed partial class FuseDispatcher
{
    private int Open(in FuseContext context, ref FuseRequestReader body, Span<byte> reply, bool directory)
    {
        if (!body.TryRead(out FuseOpenIn input))
        {
            return Invalid(in context, reply);
        }

        Errno errno = directory
            ? _fileSystem.OpenDir(in context, context.NodeId, input.Flags, out FuseOpenResult result)
            : _fileSystem.Open(in context, context.NodeId, input.Flags, out result);
        if (errno != Errno.Success)
        {
            return FuseReplyWriter.Error(reply, context.Unique, errno);
        }

        var output = new FuseOpenOut { Fh = result.Handle, OpenFlags = result.Flags, BackingId = result.BackingId };
        return FuseReplyWriter.Struct(reply, context.Unique, in output);
    }

    private int Read(in FuseContext context, ref FuseRequestReader body, Span<byte> reply)
    {
        if (!body.TryRead(out FuseReadIn input))
        {
            return Invalid(in context, reply);
        }

        Span<byte> output = FuseReplyWriter.Body(reply);
        int size = (int)Math.Min(input.Size, (uint)output.Length);
        Errno errno = _fileSystem.Read(in context, context.NodeId, input.Fh, (long)input.Offset, output[..size], out int bytesRead);
        return errno == Errno.Success
            ? FuseReplyWriter.Complete(reply, context.Unique, Math.Clamp(bytesRead, 0, size))
            : FuseReplyWriter.Error(reply, context.Unique, errno);
    }

    private int Write(in FuseContext context, ref FuseRequestReader body, Span<byte> reply)
    {
        if (!body.TryRead(out FuseWriteIn input) || !body.TryReadBytes((int)input.Size, out ReadOnlySpan<byte> data))
        {
            return Invalid(in context, reply);
        }

        Errno errno = _fileSystem.Write(in context, context.NodeId, input.Fh, (long)input.Offset, data, input.WriteFlags, out int written);
        if (errno != Errno.Success)
        {
            return FuseReplyWriter.Error(reply, context.Unique, errno);
        }

        var output = new FuseWriteOut { Size = (uint)written };
        return FuseReplyWriter.Struct(reply, context.Unique, in output);
    }

    private int Release(in FuseContext context, ref FuseRequestReader body, Span<byte> reply, bool directory)
    {
        if (!body.TryRead(out FuseReleaseIn input))
        {
            return Invalid(in context, reply);
        }

        Errno errno = directory
            ? _fileSystem.ReleaseDir(in context, context.NodeId, input.Fh)
            : _fileSystem.Release(in context, context.NodeId, input.Fh, input.Flags);
        return Status(in context, reply, errno);
    }

    private int Flush(in FuseContext context, ref FuseRequestReader body, Span<byte> reply)
    {
        if (!body.TryRead(out FuseFlushIn input))
        {
            return Invalid(in context, reply);
        }

        return Status(in context, reply, _fileSystem.Flush(in context, context.NodeId, input.Fh, input.LockOwner));
    }

    private int Fsync(in FuseContext context, ref FuseRequestReader body, Span<byte> reply, bool directory)
    {
        if (!body.TryRead(out FuseFsyncIn input))
        {
            return Invalid(in context, reply);
        }

        bool dataOnly = (input.FsyncFlags & FuseProtocol.FsyncFdatasync) != 0;
        Errno errno = directory
            ? _fileSystem.FsyncDir(in context, context.NodeId, input.Fh, dataOnly)
            : _fileSystem.Fsync(in context, context.NodeId, input.Fh, dataOnly);
        return Status(in context, reply, errno);
    }

    private int ReadDir(in FuseContext context, ref FuseRequestReader body, Span<byte> reply, bool plus)
    {
        if (!body.TryRead(out FuseReadIn input))
        {
            return Invalid(in context, reply);
        }

        Span<byte> output = FuseReplyWriter.Body(reply);
        var writer = new FuseDirectoryWriter(output[..(int)Math.Min(input.Size, (uint)output.Length)], plus);
        Errno errno = plus
            ? _fileSystem.ReadDirPlus(in context, context.NodeId, input.Fh, (long)input.Offset, ref writer)
            : _fileSystem.ReadDir(in context, context.NodeId, input.Fh, (long)input.Offset, ref writer);

        // Entries already added to a READDIRPLUS reply hold lookup references, so once anything was
        // written the reply must go out even if the listing then failed.
        if (errno != Errno.Success && writer.BytesWritten == 0)
        {
            return FuseReplyWriter.Error(reply, context.Unique, errno);
        }

        return FuseReplyWriter.Complete(reply, context.Unique, writer.BytesWritten);
    }

    private int Fallocate(in FuseContext context, ref FuseRequestReader body, Span<byte> reply)
    {
        if (!body.TryRead(out FuseFallocateIn input))
        {
            return Invalid(in context, reply);
        }

        return Status(in context, reply, _fileSystem.Fallocate(in context, context.NodeId, input.Fh, input.Mode, (long)input.Offset, (long)input.Length));
    }

    private int Lseek(in FuseContext context, ref FuseRequestReader body, Span<byte> reply)
    {
        if (!body.TryRead(out FuseLseekIn input))
        {
            return Invalid(in context, reply);
        }

        Errno errno = _fileSystem.Lseek(in context, context.NodeId, input.Fh, (long)input.Offset, input.Whence, out long position);
        if (errno != Errno.Success)
        {
            return FuseReplyWriter.Error(reply, context.Unique, errno);
        }

        var output = new FuseLseekOut { Offset = (ulong)position };
        return FuseReplyWriter.Struct(reply, context.Unique, in output);
    }

    private int CopyFileRange(in FuseContext context, ref FuseRequestReader body, Span<byte> reply)
    {
        if (!body.TryRead(out FuseCopyFileRangeIn input))
        {
            return Invalid(in context, reply);
        }

        Errno errno = _fileSystem.CopyFileRange(in context, context.NodeId, input.FhIn, (long)input.OffIn,
            input.NodeIdOut, input.FhOut, (long)input.OffOut, (long)input.Length, input.Flags, out long copied);
        if (errno != Errno.Success)
        {
            return FuseReplyWriter.Error(reply, context.Unique, errno);
        }

        // COPY_FILE_RANGE answers with fuse_write_out (a 32-bit size).
        var output = new FuseWriteOut { Size = (uint)Math.Min(copied, uint.MaxValue) };
        return FuseReplyWriter.Struct(reply, context.Unique, in output);
    }
}
