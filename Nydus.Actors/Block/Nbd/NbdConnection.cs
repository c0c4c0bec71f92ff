using System.Buffers;
using System.Buffers.Binary;
using System.Net.Sockets;
using System.Text;
using Microsoft.Win32.SafeHandles;
using Serilog;
using static Nydus.Actors.Block.Nbd.NbdProtocol;

namespace Nydus.Actors.Block.Nbd;

/// <summary>Thrown to end a connection whose peer broke the protocol (the protocol's answer is to hang up).</summary>
internal sealed class NbdProtocolException(string message) : Exception(message);

/// <summary>
/// One client of an <see cref="NbdServer"/>: the fixed newstyle handshake (options EXPORT_NAME, LIST, INFO, GO,
/// STRUCTURED_REPLY, LIST/SET_META_CONTEXT base:allocation, ABORT), then the transmission phase: READ (simple or
/// structured replies, holes as OFFSET_HOLE chunks), BLOCK_STATUS, DISC; writes, trims and write-zeroes answer
/// EPERM (the export is read-only), anything else EINVAL. Reads and BLOCK_STATUS of one connection run on up to
/// <see cref="NbdServerOptions.Threads"/> pool threads at once against the device (blob cache / backend) and are
/// answered as they finish, each reply whole, with its cookie.
/// </summary>
internal sealed class NbdConnection
{
    private static readonly ILogger Log = Serilog.Log.ForContext<NbdConnection>();

    private readonly Socket _socket;
    private readonly NbdExportTable _exports;
    private readonly NbdServerOptions _options;
    private readonly byte[] _header = new byte[32];
    private readonly NbdCounters _counters;

    // Replies of concurrent workers go out whole, one at a time.
    private readonly SemaphoreSlim _sendLock = new(1, 1);
    // Request loops take turns at reading requests (leader/follower): see TransmitAsync.
    private readonly SemaphoreSlim _receiveLock = new(1, 1);
    private Exception? _fault;
    private volatile bool _disconnecting;
    private bool _noZeroes;
    private bool _structured;
    private bool _baseAllocation;

    public NbdConnection(Socket socket, NbdExportTable exports, NbdServerOptions options, NbdCounters? counters = null)
    {
        _counters = counters ?? new NbdCounters();
        _socket = socket;
        _exports = exports;
        _options = options;
    }

    public async Task RunAsync(CancellationToken cancellation)
    {
        NbdExport? export;
        using (var handshake = CancellationTokenSource.CreateLinkedTokenSource(cancellation))
        {
            // A client gets a bounded time to choose an export; an idle half-open connection must not stay forever.
            handshake.CancelAfter(_options.HandshakeTimeout);
            export = await HandshakeAsync(handshake.Token);
        }

        if (export is null) return;
        try
        {
            await TransmitAsync(export, cancellation);
        }
        finally
        {
            export.Release();
        }
    }

    /// <summary>
    /// The transmission phase alone, for the kernel's NBD driver attached through ioctls (<see cref="NbdKernelDevice"/>):
    /// it was told the size and flags by NBD_SET_SIZE_BLOCKS/NBD_SET_FLAGS, so there is no handshake and replies are
    /// simple. <paramref name="export"/> must be leased by the caller, who also releases it.
    /// </summary>
    public Task RunTransmissionAsync(NbdExport export, CancellationToken cancellation) => TransmitAsync(export, cancellation);

    // ---- handshake ---------------------------------------------------------------------------------------

    /// <returns>The leased export to serve, or null when the client ended the handshake.</returns>
    private async Task<NbdExport?> HandshakeAsync(CancellationToken cancellation)
    {
        var greeting = new byte[18];
        BinaryPrimitives.WriteUInt64BigEndian(greeting, InitMagic);
        BinaryPrimitives.WriteUInt64BigEndian(greeting.AsSpan(8), OptionMagic);
        BinaryPrimitives.WriteUInt16BigEndian(greeting.AsSpan(16), FlagFixedNewstyle | FlagNoZeroes);
        await SendAsync(greeting, cancellation);

        await ReceiveAsync(_header.AsMemory(0, 4), cancellation);
        uint clientFlags = BinaryPrimitives.ReadUInt32BigEndian(_header);
        if ((clientFlags & ClientFlagFixedNewstyle) == 0 || (clientFlags & ~(ClientFlagFixedNewstyle | ClientFlagNoZeroes)) != 0)
        {
            throw new NbdProtocolException($"client flags 0x{clientFlags:x}: only fixed newstyle clients are served");
        }

        _noZeroes = (clientFlags & ClientFlagNoZeroes) != 0;
        while (true)
        {
            await ReceiveAsync(_header.AsMemory(0, 16), cancellation);
            ulong magic = BinaryPrimitives.ReadUInt64BigEndian(_header);
            uint option = BinaryPrimitives.ReadUInt32BigEndian(_header.AsSpan(8));
            uint length = BinaryPrimitives.ReadUInt32BigEndian(_header.AsSpan(12));
            if (magic != OptionMagic) throw new NbdProtocolException($"bad option magic 0x{magic:x}");
            if (length > _options.MaxOptionBytes)
            {
                throw new NbdProtocolException($"option {option} carries {length} bytes (limit {_options.MaxOptionBytes})");
            }

            byte[] data = new byte[length];
            await ReceiveAsync(data, cancellation);
            switch (option)
            {
                case OptExportName:
                    return await ExportNameAsync(Encoding.UTF8.GetString(data), cancellation);
                case OptAbort:
                    await ReplyAsync(option, RepAck, [], cancellation);
                    return null;
                case OptList:
                    await ListAsync(data, cancellation);
                    break;
                case OptInfo:
                case OptGo:
                    if (await InfoOrGoAsync(option, data, cancellation) is { } chosen) return chosen;
                    break;
                case OptStructuredReply:
                    if (length != 0)
                    {
                        await ErrorAsync(option, RepErrInvalid, "STRUCTURED_REPLY takes no data", cancellation);
                        break;
                    }

                    _structured = true;
                    await ReplyAsync(option, RepAck, [], cancellation);
                    break;
                case OptListMetaContext:
                case OptSetMetaContext:
                    await MetaContextAsync(option, data, cancellation);
                    break;
                case OptStartTls:
                    await ErrorAsync(option, RepErrPolicy, "TLS is not offered: use the Unix socket or a trusted network", cancellation);
                    break;
                default:
                    await ErrorAsync(option, RepErrUnsup, $"option {option} is not supported", cancellation);
                    break;
            }
        }
    }

    private async Task<NbdExport?> ExportNameAsync(string name, CancellationToken cancellation)
    {
        // NBD_OPT_EXPORT_NAME has no error reply: an unknown name ends the connection.
        NbdExport export = _exports.Find(name) is { } found && found.TryLease()
            ? found
            : throw new NbdProtocolException($"EXPORT_NAME '{name}': no such export");
        try
        {
            var reply = new byte[_noZeroes ? 10 : 134];
            BinaryPrimitives.WriteUInt64BigEndian(reply, (ulong)export.Device.Size);
            BinaryPrimitives.WriteUInt16BigEndian(reply.AsSpan(8), TransmissionFlags);
            await SendAsync(reply, cancellation);
            return export;
        }
        catch
        {
            export.Release();
            throw;
        }
    }

    private ushort TransmissionFlags =>
        (ushort)(TransHasFlags | TransReadOnly | TransCanMultiConn | (_structured ? TransSendDf : 0));

    private async Task ListAsync(byte[] data, CancellationToken cancellation)
    {
        if (data.Length != 0)
        {
            await ErrorAsync(OptList, RepErrInvalid, "LIST takes no data", cancellation);
            return;
        }

        foreach (NbdExport export in _exports.All)
        {
            byte[] name = Encoding.UTF8.GetBytes(export.Name);
            byte[] description = Encoding.UTF8.GetBytes(export.Description);
            var reply = new byte[4 + name.Length + description.Length];
            BinaryPrimitives.WriteUInt32BigEndian(reply, (uint)name.Length);
            name.CopyTo(reply, 4);
            description.CopyTo(reply, 4 + name.Length);
            await ReplyAsync(OptList, RepServer, reply, cancellation);
        }

        await ReplyAsync(OptList, RepAck, [], cancellation);
    }

    private async Task<NbdExport?> InfoOrGoAsync(uint option, byte[] data, CancellationToken cancellation)
    {
        if (!TryParseNameAndCount(data, out string name, out int at, out uint count) || data.Length != at + 2 * count
            || count > ushort.MaxValue)
        {
            await ErrorAsync(option, RepErrInvalid, "malformed INFO/GO request", cancellation);
            return null;
        }

        var requested = new HashSet<ushort>();
        for (int i = 0; i < count; i++) requested.Add(BinaryPrimitives.ReadUInt16BigEndian(data.AsSpan(at + 2 * i)));
        NbdExport? export = _exports.Find(name);
        if (export is null)
        {
            await ErrorAsync(option, RepErrUnknown, $"no export named '{name}'", cancellation);
            return null;
        }

        var info = new byte[12];
        BinaryPrimitives.WriteUInt16BigEndian(info, InfoExport);
        BinaryPrimitives.WriteUInt64BigEndian(info.AsSpan(2), (ulong)export.Device.Size);
        BinaryPrimitives.WriteUInt16BigEndian(info.AsSpan(10), TransmissionFlags);
        await ReplyAsync(option, RepInfo, info, cancellation);
        if (requested.Contains(InfoName)) await ReplyAsync(option, RepInfo, TypedString(InfoName, export.Name), cancellation);
        if (requested.Contains(InfoDescription) && export.Description.Length > 0)
        {
            await ReplyAsync(option, RepInfo, TypedString(InfoDescription, export.Description), cancellation);
        }

        // Any byte range can be read; 4 KiB (the EROFS block) is what reads should come in.
        var sizes = new byte[14];
        BinaryPrimitives.WriteUInt16BigEndian(sizes, InfoBlockSize);
        BinaryPrimitives.WriteUInt32BigEndian(sizes.AsSpan(2), 1);
        BinaryPrimitives.WriteUInt32BigEndian(sizes.AsSpan(6), BlockAddressSpace.BlockSize);
        BinaryPrimitives.WriteUInt32BigEndian(sizes.AsSpan(10), (uint)_options.MaxRequestBytes);
        await ReplyAsync(option, RepInfo, sizes, cancellation);
        if (option == OptInfo)
        {
            await ReplyAsync(option, RepAck, [], cancellation);
            return null;
        }

        if (!export.TryLease())
        {
            await ErrorAsync(option, RepErrUnknown, $"export '{name}' was just removed", cancellation);
            return null;
        }

        try
        {
            await ReplyAsync(option, RepAck, [], cancellation);
            return export;
        }
        catch
        {
            export.Release();
            throw;
        }
    }

    private async Task MetaContextAsync(uint option, byte[] data, CancellationToken cancellation)
    {
        if (option == OptSetMetaContext && !_structured)
        {
            await ErrorAsync(option, RepErrInvalid, "SET_META_CONTEXT needs STRUCTURED_REPLY first", cancellation);
            return;
        }

        if (!TryParseNameAndCount(data, out string name, out int at, out uint count, countBytes: 4))
        {
            await ErrorAsync(option, RepErrInvalid, "malformed meta context request", cancellation);
            return;
        }

        var queries = new List<string>();
        for (uint i = 0; i < count; i++)
        {
            if (data.Length - at < 4 || BinaryPrimitives.ReadUInt32BigEndian(data.AsSpan(at)) is var length && length > data.Length - at - 4)
            {
                await ErrorAsync(option, RepErrInvalid, "malformed meta context query", cancellation);
                return;
            }

            queries.Add(Encoding.UTF8.GetString(data, at + 4, (int)length));
            at += 4 + (int)length;
        }

        if (at != data.Length)
        {
            await ErrorAsync(option, RepErrInvalid, "trailing bytes after the meta context queries", cancellation);
            return;
        }

        if (_exports.Find(name) is null)
        {
            await ErrorAsync(option, RepErrUnknown, $"no export named '{name}'", cancellation);
            return;
        }

        bool selected = option == OptListMetaContext
            ? queries.Count == 0 || queries.Any(q => q is BaseAllocation or "base:")
            : queries.Contains(BaseAllocation);
        if (option == OptSetMetaContext) _baseAllocation = selected;
        if (selected)
        {
            byte[] contextName = Encoding.UTF8.GetBytes(BaseAllocation);
            var reply = new byte[4 + contextName.Length];
            BinaryPrimitives.WriteUInt32BigEndian(reply, BaseAllocationId);
            contextName.CopyTo(reply, 4);
            await ReplyAsync(option, RepMetaContext, reply, cancellation);
        }

        await ReplyAsync(option, RepAck, [], cancellation);
    }

    private static bool TryParseNameAndCount(byte[] data, out string name, out int next, out uint count, int countBytes = 2)
    {
        name = "";
        next = 0;
        count = 0;
        if (data.Length < 4) return false;
        uint nameLength = BinaryPrimitives.ReadUInt32BigEndian(data);
        if (nameLength > data.Length - 4 - countBytes) return false;
        name = Encoding.UTF8.GetString(data, 4, (int)nameLength);
        int at = 4 + (int)nameLength;
        count = countBytes == 2 ? BinaryPrimitives.ReadUInt16BigEndian(data.AsSpan(at)) : BinaryPrimitives.ReadUInt32BigEndian(data.AsSpan(at));
        next = at + countBytes;
        return true;
    }

    private static byte[] TypedString(ushort type, string text)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(text);
        var reply = new byte[2 + bytes.Length];
        BinaryPrimitives.WriteUInt16BigEndian(reply, type);
        bytes.CopyTo(reply, 2);
        return reply;
    }

    private Task ErrorAsync(uint option, uint error, string message, CancellationToken cancellation) =>
        ReplyAsync(option, error, Encoding.UTF8.GetBytes(message), cancellation);

    private async Task ReplyAsync(uint option, uint type, byte[] data, CancellationToken cancellation)
    {
        var reply = new byte[20 + data.Length];
        BinaryPrimitives.WriteUInt64BigEndian(reply, OptionReplyMagic);
        BinaryPrimitives.WriteUInt32BigEndian(reply.AsSpan(8), option);
        BinaryPrimitives.WriteUInt32BigEndian(reply.AsSpan(12), type);
        BinaryPrimitives.WriteUInt32BigEndian(reply.AsSpan(16), (uint)data.Length);
        data.CopyTo(reply, 20);
        await SendAsync(reply, cancellation);
    }

    // ---- transmission ------------------------------------------------------------------------------------

    private async Task TransmitAsync(NbdExport export, CancellationToken cancellation)
    {
        // Leader/follower, as nbdkit's parallel thread model: up to Threads request loops per connection take turns
        // at the socket; the one holding the receive lock reads one request (and a write's payload), hands the lock
        // on and then serves that request itself, on the thread its receive completed on, and sends the reply under
        // the send lock. So a request costs no hand-off between threads (a read queued to another pool thread and a
        // wake-up per request cost more than the read itself when the host is loaded), and one connection still
        // has up to Threads reads against the device at once, answered in the order they finish with their cookies
        // (libnbd and the kernel pipeline requests). An idle connection holds no thread: one loop waits in an async
        // receive, the others on the receive lock. Threads also bounds the read buffers a connection holds.
        BlockAddressSpace device = export.Device;
        int threads = Math.Max(1, _options.Threads);
        using var failed = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
        var loops = new Task[threads];
        for (int i = 0; i < threads; i++) loops[i] = ServeRequestsAsync(device, failed);

        // The device must not be released under a running read, and NBD_CMD_DISC asks for the replies of the
        // requests already sent: every loop ends before this returns (a read returns or fails, a send is cancelled).
        // The loops never throw: each records its fault in _fault.
        await Task.WhenAll(loops);
        if (_fault is not null) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(_fault);
    }

    private async Task ServeRequestsAsync(BlockAddressSpace device, CancellationTokenSource failed)
    {
        // Off the caller's thread: each loop is its own chain of continuations.
        await Task.Yield();
        CancellationToken cancellation = failed.Token;
        var splice = new SpliceSlot();
        try
        {
            while (true)
            {
                Request request;
                await _receiveLock.WaitAsync(cancellation);
                try
                {
                    if (_disconnecting) return;
                    request = await ReceiveRequestAsync(device, cancellation);
                }
                finally
                {
                    _receiveLock.Release();
                }

                await ServeAsync(request, splice, cancellation);
            }
        }
        catch (Exception e)
        {
            // The client left or broke the protocol, or a reply could not be sent: the whole connection ends. The
            // first fault is the one reported (it is recorded before the cancellation that wakes the other loops).
            Interlocked.CompareExchange(ref _fault, e, null);
            failed.Cancel();
        }
        finally
        {
            splice.Pipe?.Dispose();
        }
    }

    /// <summary>A request loop's pipe for spliced reads (<see cref="SplicePipe"/>), made on first use.</summary>
    private sealed class SpliceSlot
    {
        public SplicePipe? Pipe;

        /// <summary>False once making a pipe failed: this loop copies from then on.</summary>
        public bool Usable = true;
    }

    /// <summary>What a request loop does once it has read a request and let go of the socket.</summary>
    private enum Action : byte
    {
        Disconnect,
        Read,
        BlockStatus,
        Reply,
    }

    /// <summary>One request as received: the reply (an error code or a read) is made after the receive lock is released.</summary>
    private readonly record struct Request(Action Action, BlockAddressSpace Device, ulong Cookie, long Offset, uint Length,
        bool DontFragment, bool One, uint Error, string? Message);

    /// <summary>Reads one request header (and drains a write's payload); holds the receive lock.</summary>
    private async ValueTask<Request> ReceiveRequestAsync(BlockAddressSpace device, CancellationToken cancellation)
    {
        await ReceiveAsync(_header.AsMemory(0, 28), cancellation);
        uint magic = BinaryPrimitives.ReadUInt32BigEndian(_header);
        ushort flags = BinaryPrimitives.ReadUInt16BigEndian(_header.AsSpan(4));
        ushort type = BinaryPrimitives.ReadUInt16BigEndian(_header.AsSpan(6));
        ulong cookie = BinaryPrimitives.ReadUInt64BigEndian(_header.AsSpan(8));
        ulong offset = BinaryPrimitives.ReadUInt64BigEndian(_header.AsSpan(16));
        uint length = BinaryPrimitives.ReadUInt32BigEndian(_header.AsSpan(24));
        if (magic != RequestMagic) throw new NbdProtocolException($"bad request magic 0x{magic:x8}");
        bool inside = length > 0 && offset <= (ulong)device.Size && length <= (ulong)device.Size - offset;
        Request Reply(uint error, string message) => new(Action.Reply, device, cookie, 0, 0, false, false, error, message);
        switch (type)
        {
            case CmdRead:
                return !inside || length > _options.MaxRequestBytes
                    ? Reply(EInval, $"read of {length} bytes at {offset} is outside the {device.Size}-byte export or over {_options.MaxRequestBytes} bytes")
                    : new Request(Action.Read, device, cookie, (long)offset, length, (flags & CmdFlagDontFragment) != 0, false, 0, null);
            case CmdWrite:
                // The payload follows the header: drain it to stay in step, or hang up if it is absurd.
                if (length > _options.MaxRequestBytes)
                {
                    throw new NbdProtocolException($"write of {length} bytes on a read-only export");
                }

                await DiscardAsync((int)length, cancellation);
                return Reply(EPerm, "the export is read-only");
            case CmdTrim:
            case CmdWriteZeroes:
                return Reply(EPerm, "the export is read-only");
            case CmdFlush:
                return Reply(0, "");
            case CmdDisconnect:
                // No reply; the other loops finish the requests they hold and then stop.
                _disconnecting = true;
                return new Request(Action.Disconnect, device, cookie, 0, 0, false, false, 0, null);
            case CmdBlockStatus:
                return !_structured || !_baseAllocation || !inside
                    ? Reply(EInval, "BLOCK_STATUS needs structured replies, the base:allocation context and a range inside the export")
                    : new Request(Action.BlockStatus, device, cookie, (long)offset, length, false, (flags & CmdFlagReqOne) != 0, 0, null);
            default:
                return Reply(EInval, $"command {type} is not supported");
        }
    }

    private async ValueTask ServeAsync(Request request, SpliceSlot splice, CancellationToken cancellation)
    {
        switch (request.Action)
        {
            case Action.Read when _options.Splice && splice.Usable
                                  && request.Device.TryMapToFile(request.Offset, (int)request.Length, out SafeFileHandle file, out long fileOffset):
                await SpliceReadAsync(splice, file, fileOffset, request, cancellation);
                break;
            case Action.Read:
                await ReadAsync(request.Device, request.Cookie, request.Offset, (int)request.Length, request.DontFragment, cancellation);
                break;
            case Action.BlockStatus:
                await BlockStatusAsync(request.Device, request.Cookie, request.Offset, request.Length, request.One, cancellation);
                break;
            case Action.Reply when request.Error == 0:
                await SendSimpleAsync(request.Cookie, 0, cancellation);
                break;
            case Action.Reply:
                await SendErrorAsync(request.Cookie, request.Error, request.Message!, cancellation);
                break;
        }
    }

    /// <summary>
    /// A read of a range stored as it is in a local file (<see cref="BlockAddressSpace.TryMapToFile"/>): the file
    /// pages go to the socket through the loop's pipe, never copied into this process. A range larger than the
    /// pipe goes the copying way.
    /// </summary>
    private async ValueTask SpliceReadAsync(SpliceSlot splice, SafeFileHandle file, long fileOffset, Request request,
        CancellationToken cancellation)
    {
        int length = (int)request.Length;
        splice.Pipe ??= SplicePipe.TryCreate();
        if (splice.Pipe is null) splice.Usable = false;
        if (splice.Pipe is not { } pipe || length > pipe.Capacity)
        {
            await ReadAsync(request.Device, request.Cookie, request.Offset, length, request.DontFragment, cancellation);
            return;
        }

        try
        {
            pipe.Fill(file, fileOffset, length);
        }
        catch (IOException e)
        {
            splice.Pipe = null;
            pipe.Dispose();
            Log.Warning("NBD read of {Length} bytes at {Offset} failed: {Error}", length, request.Offset, e.Message);
            await SendErrorAsync(request.Cookie, EIo, $"read failed: {e.Message}", cancellation);
            return;
        }

        await _sendLock.WaitAsync(cancellation);
        try
        {
            SendSpliced(pipe, request.Cookie, request.Offset, length, cancellation);
            Interlocked.Increment(ref _counters.SplicedReads);
        }
        catch
        {
            // Part of the data may still be in the pipe; the connection ends anyway.
            splice.Pipe = null;
            pipe.Dispose();
            throw;
        }
        finally
        {
            _sendLock.Release();
        }
    }

    private void SendSpliced(SplicePipe pipe, ulong cookie, long offset, int length, CancellationToken cancellation)
    {
        // The range is one stored extent (no hole), so a structured reply is one OFFSET_DATA chunk.
        Span<byte> header = stackalloc byte[28];
        if (!_structured)
        {
            WriteSimpleHeader(header, cookie, 0);
            pipe.Send(_socket, header[..16], length, cancellation);
            return;
        }

        WriteChunkHeader(header, ReplyFlagDone, ReplyTypeOffsetData, cookie, 8 + (uint)length);
        BinaryPrimitives.WriteUInt64BigEndian(header[20..], (ulong)offset);
        pipe.Send(_socket, header, length, cancellation);
    }

    private async Task ReadAsync(BlockAddressSpace device, ulong cookie, long offset, int length, bool dontFragment,
        CancellationToken cancellation)
    {
        // One buffer for the reply header and the data, so the reply goes out in one send.
        const int headerRoom = 32;
        byte[] buffer = ArrayPool<byte>.Shared.Rent(headerRoom + length);
        try
        {
            Memory<byte> data = buffer.AsMemory(headerRoom, length);
            try
            {
                device.Read(offset, data.Span);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                Log.Warning("NBD read of {Length} bytes at {Offset} failed: {Error}", length, offset, e.Message);
                await SendErrorAsync(cookie, EIo, $"read failed: {e.Message}", cancellation);
                return;
            }

            if (!_structured)
            {
                int start = headerRoom - 16;
                WriteSimpleHeader(buffer.AsSpan(start), cookie, 0);
                await SendReplyAsync(buffer.AsMemory(start, 16 + length), cancellation);
                return;
            }

            if (dontFragment || !HasHole(device, offset, length))
            {
                int start = headerRoom - 28;
                WriteChunkHeader(buffer.AsSpan(start), ReplyFlagDone, ReplyTypeOffsetData, cookie, 8 + (uint)length);
                BinaryPrimitives.WriteUInt64BigEndian(buffer.AsSpan(start + 20), (ulong)offset);
                await SendReplyAsync(buffer.AsMemory(start, 28 + length), cancellation);
                return;
            }

            await _sendLock.WaitAsync(cancellation);
            try
            {
                await SendFragmentedAsync(device, buffer, headerRoom, cookie, offset, length, cancellation);
            }
            finally
            {
                _sendLock.Release();
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private static bool HasHole(BlockAddressSpace device, long offset, int length)
    {
        for (long at = offset; at < offset + length;)
        {
            BlockExtent extent = device.ExtentAt(at);
            if (extent.Kind == BlockExtentKind.Hole) return true;
            at = extent.EndBlock * BlockAddressSpace.BlockSize;
        }

        return false;
    }

    /// <summary>Structured read reply: OFFSET_DATA chunks for stored extents, OFFSET_HOLE for holes.</summary>
    private async Task SendFragmentedAsync(BlockAddressSpace device, byte[] buffer, int dataStart, ulong cookie, long offset,
        int length, CancellationToken cancellation)
    {
        var header = new byte[32];
        for (long at = offset; at < offset + length;)
        {
            BlockExtent extent = device.ExtentAt(at);
            long end = Math.Min(offset + length, extent.EndBlock * BlockAddressSpace.BlockSize);
            int size = (int)(end - at);
            ushort done = end == offset + length ? ReplyFlagDone : (ushort)0;
            if (extent.Kind == BlockExtentKind.Hole)
            {
                WriteChunkHeader(header, done, ReplyTypeOffsetHole, cookie, 12);
                BinaryPrimitives.WriteUInt64BigEndian(header.AsSpan(20), (ulong)at);
                BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(28), (uint)size);
                await SendAsync(header.AsMemory(0, 32), cancellation);
            }
            else
            {
                WriteChunkHeader(header, done, ReplyTypeOffsetData, cookie, 8 + (uint)size);
                BinaryPrimitives.WriteUInt64BigEndian(header.AsSpan(20), (ulong)at);
                await SendAsync(header.AsMemory(0, 28), cancellation);
                await SendAsync(buffer.AsMemory(dataStart + (int)(at - offset), size), cancellation);
            }

            at = end;
        }
    }

    private async Task BlockStatusAsync(BlockAddressSpace device, ulong cookie, long offset, uint length, bool one,
        CancellationToken cancellation)
    {
        var descriptors = new List<(uint Length, uint Flags)>();
        long end = offset + length;
        for (long at = offset; at < end;)
        {
            BlockExtent extent = device.ExtentAt(at);
            long stop = Math.Min(end, extent.EndBlock * BlockAddressSpace.BlockSize);
            uint state = extent.Kind == BlockExtentKind.Hole ? StateHole | StateZero : 0;
            if (descriptors.Count > 0 && descriptors[^1].Flags == state)
            {
                descriptors[^1] = ((uint)(descriptors[^1].Length + stop - at), state);
            }
            else
            {
                if (one && descriptors.Count == 1) break;
                descriptors.Add(((uint)(stop - at), state));
            }

            at = stop;
        }

        var reply = new byte[20 + 4 + 8 * descriptors.Count];
        WriteChunkHeader(reply, ReplyFlagDone, ReplyTypeBlockStatus, cookie, (uint)(4 + 8 * descriptors.Count));
        BinaryPrimitives.WriteUInt32BigEndian(reply.AsSpan(20), BaseAllocationId);
        for (int i = 0; i < descriptors.Count; i++)
        {
            BinaryPrimitives.WriteUInt32BigEndian(reply.AsSpan(24 + 8 * i), descriptors[i].Length);
            BinaryPrimitives.WriteUInt32BigEndian(reply.AsSpan(28 + 8 * i), descriptors[i].Flags);
        }

        await SendReplyAsync(reply, cancellation);
    }

    private async Task SendErrorAsync(ulong cookie, uint error, string message, CancellationToken cancellation)
    {
        if (!_structured)
        {
            await SendSimpleAsync(cookie, error, cancellation);
            return;
        }

        byte[] text = Encoding.UTF8.GetBytes(message.Length > 4096 ? message[..4096] : message);
        var reply = new byte[20 + 6 + text.Length];
        WriteChunkHeader(reply, ReplyFlagDone, ReplyTypeError, cookie, (uint)(6 + text.Length));
        BinaryPrimitives.WriteUInt32BigEndian(reply.AsSpan(20), error);
        BinaryPrimitives.WriteUInt16BigEndian(reply.AsSpan(24), (ushort)text.Length);
        text.CopyTo(reply, 26);
        await SendReplyAsync(reply, cancellation);
    }

    private async Task SendSimpleAsync(ulong cookie, uint error, CancellationToken cancellation)
    {
        var reply = new byte[16];
        WriteSimpleHeader(reply, cookie, error);
        await SendReplyAsync(reply, cancellation);
    }

    private static void WriteSimpleHeader(Span<byte> target, ulong cookie, uint error)
    {
        BinaryPrimitives.WriteUInt32BigEndian(target, SimpleReplyMagic);
        BinaryPrimitives.WriteUInt32BigEndian(target.Slice(4), error);
        BinaryPrimitives.WriteUInt64BigEndian(target.Slice(8), cookie);
    }

    private static void WriteChunkHeader(Span<byte> target, ushort flags, ushort type, ulong cookie, uint length)
    {
        BinaryPrimitives.WriteUInt32BigEndian(target, StructuredReplyMagic);
        BinaryPrimitives.WriteUInt16BigEndian(target.Slice(4), flags);
        BinaryPrimitives.WriteUInt16BigEndian(target.Slice(6), type);
        BinaryPrimitives.WriteUInt64BigEndian(target.Slice(8), cookie);
        BinaryPrimitives.WriteUInt32BigEndian(target.Slice(16), length);
    }

    // ---- socket ------------------------------------------------------------------------------------------

    private async Task DiscardAsync(int length, CancellationToken cancellation)
    {
        byte[] scratch = ArrayPool<byte>.Shared.Rent(Math.Min(length, 1 << 20));
        try
        {
            while (length > 0)
            {
                int n = Math.Min(length, scratch.Length);
                await ReceiveAsync(scratch.AsMemory(0, n), cancellation);
                length -= n;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(scratch);
        }
    }

    private async Task ReceiveAsync(Memory<byte> target, CancellationToken cancellation)
    {
        while (target.Length > 0)
        {
            int n = await _socket.ReceiveAsync(target, SocketFlags.None, cancellation);
            if (n == 0) throw new EndOfStreamException("the client closed the connection");
            target = target.Slice(n);
        }
    }

    /// <summary>Sends one whole transmission-phase reply; replies of concurrent workers never interleave.</summary>
    private async Task SendReplyAsync(ReadOnlyMemory<byte> reply, CancellationToken cancellation)
    {
        await _sendLock.WaitAsync(cancellation);
        try
        {
            await SendAsync(reply, cancellation);
        }
        finally
        {
            _sendLock.Release();
        }
    }

    private async Task SendAsync(ReadOnlyMemory<byte> data, CancellationToken cancellation)
    {
        while (data.Length > 0)
        {
            int n = await _socket.SendAsync(data, SocketFlags.None, cancellation);
            data = data.Slice(n);
        }
    }
}
