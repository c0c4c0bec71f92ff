using System.Runtime.CompilerServices;
using Nydus.Actors.Fuse.Abi;
using Nydus.Actors.Fuse.FileSystem;
using Nydus.Actors.Interop;
using Serilog;
using Serilog.Events;

namespace Nydus.Actors.Fuse.Ops;

/// <summary>
/// Turns one raw request into one file-system call and lays its reply into the worker's reply buffer.
/// Shared by all workers of a session; holds no per-request state. Replies echo <c>unique</c> verbatim,
/// including the resend bit 63, as the kernel matches them by the exact value.
/// </summary>
public sealed partial class FuseDispatcher
{
    private static readonly ILogger Log = Serilog.Log.ForContext<FuseDispatcher>();
    private static readonly int InHeaderSize = Unsafe.SizeOf<FuseInHeader>();

    private readonly IFuseFileSystem _fileSystem;
    private readonly FuseInitOptions _initOptions;
    private readonly Session.FuseBackingFiles? _backingFiles;
    private long _requests;
    private long _failures;
    private long _interrupts;
    private long _resent;
    private long _refusedResends;
    private int _readaheadPending;

    /// <param name="backingFiles">The session's backing file registry, handed to the file system (in
    /// <see cref="FuseConnectionInfo.BackingFiles"/>) when INIT granted FUSE_PASSTHROUGH.</param>
    public FuseDispatcher(IFuseFileSystem fileSystem, FuseInitOptions initOptions, Session.FuseBackingFiles? backingFiles = null)
    {
        _fileSystem = fileSystem;
        _initOptions = initOptions;
        _backingFiles = backingFiles;
    }

    /// <summary>The device minor of the kernel mount served (see <see cref="FuseConnectionInfo.ServedDeviceMinor"/>): set by
    /// whoever mounted or took over the connection, before the workers start.</summary>
    public uint ServedDeviceMinor { get; set; }

    /// <summary>
    /// Called by a worker after each reply it wrote; once INIT's reply is in, widens the mount's readahead window. The
    /// kernel offers its default (128 KiB) in INIT and takes no more from the reply, so a 1 MiB sequential read would
    /// be eight READs of 128 KiB; the window is the mount's bdi setting, which root may raise in sysfs once INIT is
    /// settled (measured: a cold 256 MiB read went from 2,048 READs to 256). Not for a connection of unknown device.
    /// </summary>
    public void AfterReplyWritten()
    {
        if (Volatile.Read(ref _readaheadPending) == 0 || Interlocked.Exchange(ref _readaheadPending, 0) == 0) return;
        if (ServedDeviceMinor == 0) return;
        var setting = $"/sys/class/bdi/0:{ServedDeviceMinor}/read_ahead_kb";
        try
        {
            File.WriteAllText(setting, (_initOptions.MaxReadahead / 1024).ToString(System.Globalization.CultureInfo.InvariantCulture));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Not root, or sysfs read-only: the kernel's default window serves, only with more requests.
            Log.Information("Readahead of the FUSE mount left at the kernel's default: {Setting}: {Error}", setting, e.Message);
        }
    }

    private FuseConnectionInfo WithBackingFiles(FuseConnectionInfo connection) =>
        (connection.Flags & FuseInitFlags.Passthrough) != 0 && _backingFiles is not null
            ? connection with { BackingFiles = _backingFiles, ServedDeviceMinor = ServedDeviceMinor }
            : connection with { ServedDeviceMinor = ServedDeviceMinor };

    /// <summary>What INIT agreed, once the kernel has sent it on this connection.</summary>
    public FuseConnectionInfo? Connection { get; private set; }

    public IFuseFileSystem FileSystem => _fileSystem;

    /// <summary>
    /// Adopts what INIT agreed on a connection this process took over: the kernel sends INIT once per connection,
    /// to the predecessor, so a successor must take the negotiated options from the handed-over state instead.
    /// </summary>
    public void Restore(FuseConnectionInfo connection)
    {
        connection = WithBackingFiles(connection);
        Connection = connection;
        _fileSystem.Init(connection);
    }

    /// <summary>Requests handled so far.</summary>
    public long Requests => Interlocked.Read(ref _requests);

    /// <summary>Requests that the file system failed with an exception (answered EIO).</summary>
    public long Failures => Interlocked.Read(ref _failures);

    public long Interrupts => Interlocked.Read(ref _interrupts);

    /// <summary>Requests that came back with the resend bit after a failover.</summary>
    public long Resent => Interlocked.Read(ref _resent);

    /// <summary>Resent requests refused because repeating them is not safe (see FuseFailoverDrain.IsSafeToRepeat).</summary>
    public long RefusedResends => Interlocked.Read(ref _refusedResends);

    /// <summary>Largest request (header, fixed struct and WRITE payload) this dispatcher can be given.</summary>
    public int RequestBufferSize => (int)_initOptions.MaxWrite + FuseProtocol.HeaderRoom;

    /// <summary>Largest reply (header and READ payload).</summary>
    public int ReplyBufferSize => (int)_initOptions.MaxWrite + FuseProtocol.HeaderRoom;

    /// <summary>Handles one request.</summary>
    /// <param name="request">Exactly the bytes read from /dev/fuse.</param>
    /// <param name="reply">The worker's reply buffer (at least <see cref="ReplyBufferSize"/> bytes).</param>
    /// <returns>Bytes of <paramref name="reply"/> to write back; 0 when the request takes no reply.</returns>
    public int Dispatch(ReadOnlySpan<byte> request, Span<byte> reply)
    {
        var reader = new FuseRequestReader(request);
        if (!reader.TryRead(out FuseInHeader header))
        {
            // Not even a header: nothing to answer to.
            return 0;
        }

        Interlocked.Increment(ref _requests);
        var context = new FuseContext(header.Opcode, header.Unique, header.NodeId, header.Uid, header.Gid, header.Pid);
        int length = (int)Math.Min(header.Length, (uint)request.Length);
        var body = new FuseRequestReader(request[InHeaderSize..Math.Max(InHeaderSize, length)]);
        if (header.TotalExtensionLength != 0)
        {
            // Extensions (security context, supplementary group) trail the body; none are negotiated.
            int extensions = header.TotalExtensionLength * 8;
            body = new FuseRequestReader(request[InHeaderSize..Math.Max(InHeaderSize, length - extensions)]);
        }

        if (Log.IsEnabled(LogEventLevel.Debug))
        {
            Log.Debug("FUSE {Opcode} unique {Unique} node {NodeId} resent {Resent}", header.Opcode, context.RequestId, header.NodeId, context.IsResent);
        }

        if (context.IsResent)
        {
            Interlocked.Increment(ref _resent);
            if (!Session.FuseFailoverDrain.IsSafeToRepeat(header.Opcode))
            {
                Interlocked.Increment(ref _refusedResends);
                Log.Warning("Resent FUSE {Opcode} {RequestId} on node {NodeId} refused: the dead daemon may have done it already",
                    header.Opcode, context.RequestId, header.NodeId);
                return FuseReplyWriter.Error(reply, header.Unique, Session.FuseFailoverDrain.RefusedErrno);
            }
        }

        try
        {
            return Handle(in context, ref body, reply);
        }
        catch (Exception exception)
        {
            Interlocked.Increment(ref _failures);
            Log.Error(exception, "FUSE {Opcode} on node {NodeId} failed unexpectedly; answered EIO", header.Opcode, header.NodeId);
            return IsNoReply(header.Opcode) ? 0 : FuseReplyWriter.Error(reply, header.Unique, Errno.EIO);
        }
    }

    private static bool IsNoReply(FuseOpcode opcode) =>
        opcode is FuseOpcode.Forget or FuseOpcode.BatchForget or FuseOpcode.Interrupt or FuseOpcode.NotifyReply;

    private int Handle(in FuseContext context, ref FuseRequestReader body, Span<byte> reply)
    {
        switch (context.Opcode)
        {
            case FuseOpcode.Init: return Init(in context, ref body, reply);
            case FuseOpcode.Destroy:
                _fileSystem.Destroy();
                return FuseReplyWriter.Complete(reply, context.Unique, 0);
            case FuseOpcode.Forget: return Forget(in context, ref body);
            case FuseOpcode.BatchForget: return BatchForget(ref body);
            case FuseOpcode.Interrupt:
                // Requests are served synchronously on the worker that read them, so an interrupted request
                // simply completes; the kernel accepts its normal reply.
                Interlocked.Increment(ref _interrupts);
                return 0;
            case FuseOpcode.NotifyReply: return 0;
            case FuseOpcode.Lookup: return Lookup(in context, ref body, reply);
            case FuseOpcode.GetAttr: return GetAttr(in context, ref body, reply);
            case FuseOpcode.SetAttr: return SetAttr(in context, ref body, reply);
            case FuseOpcode.ReadLink: return ReadLink(in context, reply);
            case FuseOpcode.Symlink: return Symlink(in context, ref body, reply);
            case FuseOpcode.Mknod: return Mknod(in context, ref body, reply);
            case FuseOpcode.Mkdir: return Mkdir(in context, ref body, reply);
            case FuseOpcode.Unlink: return Unlink(in context, ref body, reply, directory: false);
            case FuseOpcode.Rmdir: return Unlink(in context, ref body, reply, directory: true);
            case FuseOpcode.Rename: return Rename(in context, ref body, reply, extended: false);
            case FuseOpcode.Rename2: return Rename(in context, ref body, reply, extended: true);
            case FuseOpcode.Link: return Link(in context, ref body, reply);
            case FuseOpcode.Open: return Open(in context, ref body, reply, directory: false);
            case FuseOpcode.OpenDir: return Open(in context, ref body, reply, directory: true);
            case FuseOpcode.Read: return Read(in context, ref body, reply);
            case FuseOpcode.Write: return Write(in context, ref body, reply);
            case FuseOpcode.StatFs: return StatFs(in context, reply);
            case FuseOpcode.Release: return Release(in context, ref body, reply, directory: false);
            case FuseOpcode.ReleaseDir: return Release(in context, ref body, reply, directory: true);
            case FuseOpcode.Flush: return Flush(in context, ref body, reply);
            case FuseOpcode.Fsync: return Fsync(in context, ref body, reply, directory: false);
            case FuseOpcode.FsyncDir: return Fsync(in context, ref body, reply, directory: true);
            case FuseOpcode.SetXattr: return SetXattr(in context, ref body, reply);
            case FuseOpcode.GetXattr: return GetXattr(in context, ref body, reply);
            case FuseOpcode.ListXattr: return ListXattr(in context, ref body, reply);
            case FuseOpcode.RemoveXattr: return RemoveXattr(in context, ref body, reply);
            case FuseOpcode.ReadDir: return ReadDir(in context, ref body, reply, plus: false);
            case FuseOpcode.ReadDirPlus: return ReadDir(in context, ref body, reply, plus: true);
            case FuseOpcode.Access: return Access(in context, ref body, reply);
            case FuseOpcode.Create: return Create(in context, ref body, reply);
            case FuseOpcode.Fallocate: return Fallocate(in context, ref body, reply);
            case FuseOpcode.Lseek: return Lseek(in context, ref body, reply);
            case FuseOpcode.CopyFileRange: return CopyFileRange(in context, ref body, reply);
            default: return FuseReplyWriter.Error(reply, context.Unique, Errno.ENOSYS);
        }
    }

    private int Init(in FuseContext context, ref FuseRequestReader body, Span<byte> reply)
    {
        if (!body.TryReadPrefix(FuseInitIn.CompatSize, out FuseInitIn offer))
        {
            return Invalid(in context, reply);
        }

        if (offer.Major < FuseProtocol.KernelMajor)
        {
            return FuseReplyWriter.Error(reply, context.Unique, Errno.EPROTO);
        }

        if (offer.Major > FuseProtocol.KernelMajor)
        {
            // A newer major: answer ours alone and the kernel retries INIT with it.
            var versionOnly = new FuseInitOut { Major = FuseProtocol.KernelMajor, Minor = FuseProtocol.KernelMinor };
            return FuseReplyWriter.Struct(reply, context.Unique, in versionOnly);
        }

        FuseInitOut answer = FuseInitNegotiation.Negotiate(in offer, _initOptions, _fileSystem.SupportsReadDirPlus, out FuseConnectionInfo connection);
        connection = WithBackingFiles(connection);
        Connection = connection;
        _fileSystem.Init(connection);
        Volatile.Write(ref _readaheadPending, 1);
        int length = FuseReplyWriter.Struct(reply, context.Unique, in answer);
        if (offer.Minor < 23)
        {
            // Kernels before 7.23 take the 24-byte reply only.
            return FuseReplyWriter.Complete(reply, context.Unique, FuseInitOut.Compat22Size);
        }

        return length;
    }

    private int Forget(in FuseContext context, ref FuseRequestReader body)
    {
        if (body.TryRead(out FuseForgetIn forget))
        {
            _fileSystem.Forget(context.NodeId, forget.NLookup);
        }

        return 0;
    }

    private int BatchForget(ref FuseRequestReader body)
    {
        if (!body.TryRead(out FuseBatchForgetIn batch))
        {
            return 0;
        }

        for (uint i = 0; i < batch.Count && body.TryRead(out FuseForgetOne one); i++)
        {
            _fileSystem.Forget(one.NodeId, one.NLookup);
        }

        return 0;
    }

    private static int Invalid(in FuseContext context, Span<byte> reply) =>
        FuseReplyWriter.Error(reply, context.Unique, Errno.EINVAL);

    private static int Status(in FuseContext context, Span<byte> reply, Errno errno) =>
        errno == Errno.Success
            ? FuseReplyWriter.Complete(reply, context.Unique, 0)
            : FuseReplyWriter.Error(reply, context.Unique, errno);

    private static int EntryReply(in FuseContext context, Span<byte> reply, Errno errno, in FuseEntry entry)
    {
        if (errno != Errno.Success)
        {
            return FuseReplyWriter.Error(reply, context.Unique, errno);
        }

        var output = default(FuseEntryOut);
        FuseReplyWriter.FillEntryOut(ref output, in entry);
        return FuseReplyWriter.Struct(reply, context.Unique, in output);
    }

    private static int AttrReply(in FuseContext context, Span<byte> reply, Errno errno, in FuseAttr attr, TimeSpan timeout)
    {
        if (errno != Errno.Success)
        {
            return FuseReplyWriter.Error(reply, context.Unique, errno);
        }

        var output = new FuseAttrOut { Attr = attr };
        FuseReplyWriter.SplitTimeout(timeout, out output.AttrValid, out output.AttrValidNsec);
        return FuseReplyWriter.Struct(reply, context.Unique, in output);
    }
}
