using System.Runtime.InteropServices;
using Nydus.Actors.Fuse.Abi;
using Nydus.Actors.Fuse.Ops;
using Nydus.Actors.Fuse.Session;
using Nydus.Actors.Passthrough;
using Nydus.Actors.Tests.Support;
using Xunit;
using static Nydus.Actors.Tests.Fuse.FuseDispatcherTests;

namespace Nydus.Actors.Tests.Fuse;

/// <summary>The read path (READ, GETATTR) builds replies in the worker's buffer without touching the managed heap.</summary>
public class FuseReadPathAllocationTests
{
    [Fact]
    public void ReadAndGetAttr_ThroughPassthrough_AllocateNothingPerRequest()
    {
        string root = Path.Combine(Path.GetTempPath(), "nydus-alloc-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(root);
        File.WriteAllBytes(Path.Combine(root, "data"), new byte[256 * 1024]);
        try
        {
            using var passthrough = new PassthroughFileSystem(root, writable: false);
            var dispatcher = new FuseDispatcher(passthrough, FuseInitOptions.ReadOnlyImage);
            byte[] reply = GC.AllocateUninitializedArray<byte>(dispatcher.ReplyBufferSize, pinned: true);

            dispatcher.Dispatch(Request(FuseOpcode.Lookup, 1, 1, Name("data")), reply);
            ulong node = MemoryMarshal.Read<FuseEntryOut>(reply.AsSpan(16)).NodeId;
            dispatcher.Dispatch(Request(FuseOpcode.Open, 2, node, Bytes(0UL)), reply);
            ulong handle = MemoryMarshal.Read<FuseOpenOut>(reply.AsSpan(16)).Fh;

            byte[] read = Request(FuseOpcode.Read, 3, node, ReadRequest(handle, offset: 4096, size: 128 * 1024));
            byte[] getattr = Request(FuseOpcode.GetAttr, 4, node, Bytes(new FuseGetAttrIn()));
            for (int i = 0; i < 200; i++)
            {
                dispatcher.Dispatch(read, reply);
                dispatcher.Dispatch(getattr, reply);
            }

            long allocated = Allocations.FewestBytesAllocated(() =>
            {
                for (int i = 0; i < 1000; i++)
                {
                    dispatcher.Dispatch(read, reply);
                    dispatcher.Dispatch(getattr, reply);
                }
            });
            Assert.Equal(0, allocated);
            Assert.Equal(16 + 128 * 1024, dispatcher.Dispatch(read, reply));
            Assert.Equal(0, MemoryMarshal.Read<FuseOutHeader>(reply).Error);
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    /// <summary>
    /// The same for an EROFS image read in place: metadata from the image's page cache (hits allocate nothing), file
    /// data pread straight into the reply. Small files (inline tails, through the page cache) and a large one.
    /// </summary>
    [Theory]
    [InlineData("big", 4096ul, 128u * 1024)]
    [InlineData("small", 0ul, 4096u)]
    public void ReadAndGetAttr_ThroughMountedErofsImage_AllocateNothingPerRequest(string file, ulong offset, uint size)
    {
        using var tree = new Nydus.Actors.Tests.Support.TreeBuilder();
        var random = new Random(3);
        byte[] big = new byte[1 << 20];
        random.NextBytes(big);
        File.WriteAllBytes(tree.P("big"), big);
        File.WriteAllBytes(tree.P("small"), big.AsSpan(0, 5000).ToArray());
        string image = Path.Combine(tree.WorkDir, "image.erofs");
        Nydus.Actors.Tests.Support.TreeBuilder.Run("mkfs.erofs", "--quiet", image, tree.Root);
        using var rafs = Nydus.Actors.Rafs.RafsImage.Open(image, Nydus.Actors.Rafs.BlobSource.None);
        var dispatcher = new FuseDispatcher(new Nydus.Actors.Rafs.RafsFileSystem(rafs), FuseInitOptions.ReadOnlyImage);
        byte[] reply = GC.AllocateUninitializedArray<byte>(dispatcher.ReplyBufferSize, pinned: true);

        dispatcher.Dispatch(Request(FuseOpcode.Lookup, 1, 1, Name(file)), reply);
        ulong node = MemoryMarshal.Read<FuseEntryOut>(reply.AsSpan(16)).NodeId;
        byte[] read = Request(FuseOpcode.Read, 3, node, ReadRequest(0, offset, size));
        byte[] getattr = Request(FuseOpcode.GetAttr, 4, node, Bytes(new FuseGetAttrIn()));
        byte[] lookup = Request(FuseOpcode.Lookup, 5, 1, Name(file));
        for (int i = 0; i < 200; i++)
        {
            dispatcher.Dispatch(read, reply);
            dispatcher.Dispatch(getattr, reply);
            dispatcher.Dispatch(lookup, reply);
        }

        long allocated = Allocations.FewestBytesAllocated(() =>
        {
            for (int i = 0; i < 1000; i++)
            {
                dispatcher.Dispatch(read, reply);
                dispatcher.Dispatch(getattr, reply);
                dispatcher.Dispatch(lookup, reply);
            }
        });
        Assert.Equal(0, allocated);
        int expected = (int)Math.Min(size, (file == "big" ? big.Length : 5000) - (long)offset);
        Assert.Equal(16 + expected, dispatcher.Dispatch(read, reply));
        Assert.Equal(0, MemoryMarshal.Read<FuseOutHeader>(reply).Error);
        Assert.True(big.AsSpan((int)offset, expected).SequenceEqual(reply.AsSpan(16, expected)), "read bytes differ from the file");
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1025)]
    public void Session_WorkerCountOutOfRange_IsRefused(int workers)
    {
        using var handle = new Microsoft.Win32.SafeHandles.SafeFileHandle(-1, ownsHandle: false);
        using var passthrough = new PassthroughFileSystem(Path.GetTempPath(), writable: false);
        Assert.Throws<ArgumentOutOfRangeException>(() => new FuseSession(handle, passthrough, new FuseSessionOptions { WorkerCount = workers }));
    }

    private static byte[] ReadRequest(ulong handle, ulong offset, uint size)
    {
        byte[] raw = new byte[40];
        BitConverter.TryWriteBytes(raw.AsSpan(0), handle);
        BitConverter.TryWriteBytes(raw.AsSpan(8), offset);
        BitConverter.TryWriteBytes(raw.AsSpan(16), size);
        return raw;
    }
}
