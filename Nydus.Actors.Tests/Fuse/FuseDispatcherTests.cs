using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Nydus.Actors.Fuse.Abi;
using Nydus.Actors.Fuse.FileSystem;
using Nydus.Actors.Fuse.Ops;
using Nydus.Actors.Interop;
using Nydus.Actors.Passthrough;
using Xunit;

namespace Nydus.Actors.Tests.Fuse;

/// <summary>The dispatcher fed with request bytes as the kernel lays them out, replies checked byte-wise.</summary>
public class FuseDispatcherTests
{
    private readonly byte[] _reply = new byte[FuseInitOptions.ReadOnlyImage.MaxWrite + FuseProtocol.HeaderRoom];

    [Fact]
    public void Dispatch_UnknownOpcode_AnswersEnosys()
    {
        var dispatcher = new FuseDispatcher(new ScriptedFileSystem(), FuseInitOptions.ReadOnlyImage);
        int length = dispatcher.Dispatch(Request((FuseOpcode)4000, unique: 7, nodeId: 1), _reply);

        FuseOutHeader header = ReplyHeader(length);
        Assert.Equal(-(int)Errno.ENOSYS, header.Error);
        Assert.Equal(7UL, header.Unique);
    }

    [Fact]
    public void Dispatch_ResentRequest_EchoesUniqueWithBit63()
    {
        var dispatcher = new FuseDispatcher(new ScriptedFileSystem(), FuseInitOptions.ReadOnlyImage);
        ulong unique = FuseProtocol.UniqueResendBit | 0x1234;
        int length = dispatcher.Dispatch(Request(FuseOpcode.Lookup, unique, 1, Name("file")), _reply);

        FuseOutHeader header = ReplyHeader(length);
        Assert.Equal(unique, header.Unique);
        Assert.Equal(0, header.Error);
        Assert.Equal(16 + 128, length);
        FuseEntryOut entry = MemoryMarshal.Read<FuseEntryOut>(_reply.AsSpan(16));
        Assert.Equal(42UL, entry.NodeId);
        Assert.Equal(2UL, entry.EntryValid);
        Assert.Equal(500_000_000u, entry.EntryValidNsec);
    }

    [Fact]
    public void Dispatch_ThrowingFileSystem_AnswersEioAndKeepsServing()
    {
        var fileSystem = new ScriptedFileSystem();
        var dispatcher = new FuseDispatcher(fileSystem, FuseInitOptions.ReadOnlyImage);

        int failed = dispatcher.Dispatch(Request(FuseOpcode.Lookup, 1, 1, Name("boom")), _reply);
        Assert.Equal(-(int)Errno.EIO, ReplyHeader(failed).Error);
        Assert.Equal(1, dispatcher.Failures);

        int next = dispatcher.Dispatch(Request(FuseOpcode.Lookup, 2, 1, Name("fine")), _reply);
        Assert.Equal(0, ReplyHeader(next).Error);
        Assert.Equal(2UL, ReplyHeader(next).Unique);
    }

    [Fact]
    public void Dispatch_ForgetAndBatchForget_SendNoReplyAndPassCounts()
    {
        var fileSystem = new ScriptedFileSystem();
        var dispatcher = new FuseDispatcher(fileSystem, FuseInitOptions.ReadOnlyImage);

        Assert.Equal(0, dispatcher.Dispatch(Request(FuseOpcode.Forget, 1, 9, Bytes(new FuseForgetIn())), _reply));
        byte[] batch = [.. Bytes(new FuseBatchForgetIn(2)), .. Bytes(new FuseForgetOne(10, 3)), .. Bytes(new FuseForgetOne(11, 5))];
        Assert.Equal(0, dispatcher.Dispatch(Request(FuseOpcode.BatchForget, 2, 0, batch), _reply));
        Assert.Equal(0, dispatcher.Dispatch(Request(FuseOpcode.Interrupt, 3, 0, Bytes(1UL)), _reply));

        Assert.Equal([(9UL, 0UL), (10UL, 3UL), (11UL, 5UL)], fileSystem.Forgotten.ToArray());
    }

    [Fact]
    public void Dispatch_TruncatedRequestBody_AnswersEinval()
    {
        var dispatcher = new FuseDispatcher(new ScriptedFileSystem(), FuseInitOptions.ReadOnlyImage);
        int length = dispatcher.Dispatch(Request(FuseOpcode.Read, 5, 2, new byte[10]), _reply);
        Assert.Equal(-(int)Errno.EINVAL, ReplyHeader(length).Error);

        // A name without its terminator is as short as a missing struct.
        int unterminated = dispatcher.Dispatch(Request(FuseOpcode.Lookup, 6, 1, "abc"u8.ToArray()), _reply);
        Assert.Equal(-(int)Errno.EINVAL, ReplyHeader(unterminated).Error);
    }

    [Fact]
    public void Dispatch_Init_RepliesNegotiatedStructAndTellsFileSystem()
    {
        var fileSystem = new ScriptedFileSystem();
        var dispatcher = new FuseDispatcher(fileSystem, FuseInitOptions.ReadOnlyImage);
        var offer = new FuseInitIn(7, 44, 131072, (uint)(FuseInitFlags.AsyncRead | FuseInitFlags.InitExt), (uint)((ulong)FuseInitFlags.HasResend >> 32));

        int length = dispatcher.Dispatch(Request(FuseOpcode.Init, 1, 0, Bytes(offer)), _reply);

        Assert.Equal(16 + 64, length);
        FuseInitOut reply = MemoryMarshal.Read<FuseInitOut>(_reply.AsSpan(16));
        Assert.Equal(40u, reply.Minor);
        Assert.Equal((uint)(FuseInitFlags.AsyncRead | FuseInitFlags.InitExt), reply.Flags);
        Assert.Equal((uint)((ulong)FuseInitFlags.HasResend >> 32), reply.Flags2);
        Assert.NotNull(fileSystem.Connection);
        Assert.Equal(dispatcher.Connection, fileSystem.Connection);
    }

    [Fact]
    public void Dispatch_ReadOnlyDefaults_RefuseWritesWithErofs()
    {
        var dispatcher = new FuseDispatcher(new ScriptedFileSystem(), FuseInitOptions.ReadOnlyImage);
        byte[] mkdir = [.. Bytes(new FuseMkdirIn()), .. Name("dir")];
        Assert.Equal(-(int)Errno.EROFS, ReplyHeader(dispatcher.Dispatch(Request(FuseOpcode.Mkdir, 1, 1, mkdir), _reply)).Error);
        Assert.Equal(-(int)Errno.EROFS, ReplyHeader(dispatcher.Dispatch(Request(FuseOpcode.Unlink, 2, 1, Name("x")), _reply)).Error);
        Assert.Equal(-(int)Errno.EROFS, ReplyHeader(dispatcher.Dispatch(Request(FuseOpcode.Open, 3, 2, Bytes((ulong)Libc.O_WRONLY)), _reply)).Error);
        Assert.Equal(0, ReplyHeader(dispatcher.Dispatch(Request(FuseOpcode.Open, 4, 2, Bytes((ulong)Libc.O_RDONLY)), _reply)).Error);
    }

    [Fact]
    public void Dispatch_ReadDir_StopsWhenTheReplyIsFullAndContinuesFromOffset()
    {
        var dispatcher = new FuseDispatcher(new ScriptedFileSystem(), FuseInitOptions.ReadOnlyImage);

        // 24-byte header + "entry-NN" (8 bytes) = 32 bytes per record; 100 bytes hold 3.
        int first = dispatcher.Dispatch(Request(FuseOpcode.ReadDir, 1, 1, Bytes(ReadIn(offset: 0, size: 100))), _reply);
        Assert.Equal(16 + 96, first);
        FuseDirent last = MemoryMarshal.Read<FuseDirent>(_reply.AsSpan(16 + 64));
        Assert.Equal(3UL, last.Off);
        Assert.Equal("entry-02", System.Text.Encoding.ASCII.GetString(_reply, 16 + 64 + 24, 8));

        int next = dispatcher.Dispatch(Request(FuseOpcode.ReadDir, 2, 1, Bytes(ReadIn(offset: 3, size: 4096))), _reply);
        Assert.Equal(16 + 32 * 7, next);
        Assert.Equal("entry-03", System.Text.Encoding.ASCII.GetString(_reply, 16 + 24, 8));
    }

    [Fact]
    public void Passthrough_UnknownOrForgottenNode_AnswersEstale()
    {
        string root = Path.Combine(Path.GetTempPath(), "nydus-dispatch-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(root);
        File.WriteAllText(Path.Combine(root, "file"), "x");
        try
        {
            using var passthrough = new PassthroughFileSystem(root, writable: true);
            var dispatcher = new FuseDispatcher(passthrough, FuseInitOptions.WritablePassthrough());

            Assert.Equal(-(int)Errno.ESTALE, ReplyHeader(dispatcher.Dispatch(Request(FuseOpcode.GetAttr, 1, 999_999, Bytes(new FuseGetAttrIn())), _reply)).Error);

            int lookup = dispatcher.Dispatch(Request(FuseOpcode.Lookup, 2, 1, Name("file")), _reply);
            ulong node = MemoryMarshal.Read<FuseEntryOut>(_reply.AsSpan(16)).NodeId;
            Assert.Equal(0, ReplyHeader(lookup).Error);
            Assert.Equal(2, passthrough.KnownNodes);

            dispatcher.Dispatch(Request(FuseOpcode.Forget, 3, node, Bytes(1UL)), _reply);
            Assert.Equal(1, passthrough.KnownNodes);
            Assert.Equal(-(int)Errno.ESTALE, ReplyHeader(dispatcher.Dispatch(Request(FuseOpcode.GetAttr, 4, node, Bytes(new FuseGetAttrIn())), _reply)).Error);
            byte[] open = Bytes((ulong)Libc.O_RDONLY);
            Assert.Equal(-(int)Errno.ESTALE, ReplyHeader(dispatcher.Dispatch(Request(FuseOpcode.Open, 5, node, open), _reply)).Error);
            Assert.Equal(-(int)Errno.EBADF, ReplyHeader(dispatcher.Dispatch(Request(FuseOpcode.Read, 6, node, Bytes(ReadIn(0, 10))), _reply)).Error);
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    [Fact]
    public void Dispatch_SetXattrWithoutExtension_ReadsEightByteHeaderThenNameAndValue()
    {
        var fileSystem = new ScriptedFileSystem();
        var dispatcher = new FuseDispatcher(fileSystem, FuseInitOptions.ReadOnlyImage);
        byte[] body = [.. Bytes(4U), .. Bytes(0U), .. Name("user.color"), .. "blue"u8.ToArray()];

        int length = dispatcher.Dispatch(Request(FuseOpcode.SetXattr, 1, 5, body), _reply);

        Assert.Equal(0, ReplyHeader(length).Error);
        Assert.Equal(("user.color", "blue"), fileSystem.LastXattr);
    }

    private static FuseReadIn ReadIn(ulong offset, uint size)
    {
        // fh, offset, size, read_flags, lock_owner, flags, padding
        byte[] raw = new byte[40];
        BitConverter.TryWriteBytes(raw.AsSpan(8), offset);
        BitConverter.TryWriteBytes(raw.AsSpan(16), size);
        return MemoryMarshal.Read<FuseReadIn>(raw);
    }

    private FuseOutHeader ReplyHeader(int length)
    {
        Assert.True(length >= 16, $"expected a reply, got {length} bytes");
        FuseOutHeader header = MemoryMarshal.Read<FuseOutHeader>(_reply);
        Assert.Equal((uint)length, header.Length);
        return header;
    }

    internal static byte[] Request(FuseOpcode opcode, ulong unique, ulong nodeId, byte[]? body = null)
    {
        body ??= [];
        int length = Unsafe.SizeOf<FuseInHeader>() + body.Length;
        var header = new FuseInHeader((uint)length, opcode, unique, nodeId, 0, 0, 1);
        return [.. Bytes(header), .. body];
    }

    internal static byte[] Name(string name) => System.Text.Encoding.UTF8.GetBytes(name + "\0");

    internal static byte[] Bytes<T>(T value)
        where T : struct
    {
        var bytes = new byte[Unsafe.SizeOf<T>()];
        MemoryMarshal.Write(bytes, in value);
        return bytes;
    }

    /// <summary>A read-only file system answering from a script: "boom" throws, everything else is node 42.</summary>
    private sealed class ScriptedFileSystem : IFuseFileSystem
    {
        public ConcurrentQueue<(ulong NodeId, ulong Count)> Forgotten { get; } = new();

        public FuseConnectionInfo? Connection { get; private set; }

        public void Init(FuseConnectionInfo connection) => Connection = connection;

        public void Forget(ulong nodeId, ulong lookupCount) => Forgotten.Enqueue((nodeId, lookupCount));

        public (string Name, string Value) LastXattr { get; private set; }

        public Errno SetXattr(in FuseContext context, ulong nodeId, ReadOnlySpan<byte> name, ReadOnlySpan<byte> value, int flags)
        {
            LastXattr = (System.Text.Encoding.UTF8.GetString(name), System.Text.Encoding.UTF8.GetString(value));
            return Errno.Success;
        }

        public Errno Lookup(in FuseContext context, ulong parent, ReadOnlySpan<byte> name, out FuseEntry entry)
        {
            if (name.SequenceEqual("boom"u8))
            {
                throw new InvalidOperationException("injected failure");
            }

            entry = new FuseEntry { NodeId = 42, EntryTimeout = TimeSpan.FromSeconds(2.5), AttrTimeout = TimeSpan.FromSeconds(1) };
            entry.Attr.Ino = 42;
            entry.Attr.Mode = FileModes.S_IFREG | 0x1A4;
            return Errno.Success;
        }

        public Errno ReadDir(in FuseContext context, ulong nodeId, ulong handle, long offset, ref FuseDirectoryWriter writer)
        {
            Span<byte> name = stackalloc byte[8];
            for (long i = offset; i < 10; i++)
            {
                "entry-"u8.CopyTo(name);
                name[6] = (byte)('0' + i / 10);
                name[7] = (byte)('0' + i % 10);
                if (!writer.TryAdd((ulong)(100 + i), name, 8, i + 1))
                {
                    break;
                }
            }

            return Errno.Success;
        }
    }
}
