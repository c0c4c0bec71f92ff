using System.Buffers.Binary;
using Nydus.Actors.Block;
using Nydus.Actors.Block.Nbd;
using Nydus.Actors.Config;
using Nydus.Actors.Tests.RafsFuse;
using Nydus.Actors.Tests.Support;
using Xunit;
using Nydus.Actors.Storage.Cache;

namespace Nydus.Actors.Tests.Block;

/// <summary>
/// The spliced read path (<see cref="SplicePipe"/>): a chunked <c>mkfs.erofs --blobdev</c> image whose data device
/// is a localfs file, so the bootstrap and the data extent are served file -> pipe -> socket. Every reply, simple
/// and structured, aligned or not, inside one extent or across the metadata / hole / data boundaries (those are
/// copied), larger than a pipe (copied), must equal the device as <see cref="BlockAddressSpace.Read"/> builds it;
/// a blob file cut short under a connection answers EIO and the connection stays in step.
/// </summary>
public sealed class NbdSpliceTests : IDisposable
{
    private readonly TempDir _dir = new("nbd-splice");
    private readonly NbdExportTable _exports = new();
    private readonly BlobCacheRegistry _caches = new();
    private readonly NbdServer _server;
    private readonly BlockAddressSpace _device;
    private readonly byte[] _expected;
    private readonly string _blob;

    public NbdSpliceTests()
    {
        string source = Directory.CreateDirectory(_dir.Combine("src")).FullName;
        var random = new Random(17);
        for (int i = 0; i < 5; i++)
        {
            // Odd sizes: the last chunk of each file ends inside a block.
            var data = new byte[(1 << 20) + 4096 * i + 777];
            random.NextBytes(data);
            File.WriteAllBytes(Path.Combine(source, "f" + i), data);
        }

        string meta = _dir.Combine("meta.erofs");
        _blob = _dir.Combine("blob.img");
        TreeBuilder.Run("mkfs.erofs", "--quiet", "--chunksize=1048576", "--blobdev=" + _blob, meta, source);
        _device = BlockImages.Open(meta, NydusConfigLoader.Parse(GeneratedImageFuseTests.BlobFileConfig(_blob), "test"), "test", _caches);
        _expected = new byte[_device.Size];
        _device.Read(0, _expected);
        _exports.TryAdd(new NbdExport("img", "", _device));
        _server = new NbdServer(_exports);
        _server.ListenUnix(Socket);
    }

    private string Socket => _dir.Combine("nbd.sock");

    private BlockExtent Data => _device.Extents.Single(e => e.Kind == BlockExtentKind.Data);

    private IEnumerable<(long Offset, int Length)> Ranges()
    {
        long dataStart = Data.StartBlock * BlockAddressSpace.BlockSize;
        long dataEnd = Data.EndBlock * BlockAddressSpace.BlockSize;
        yield return (0, 4096);                               // the superblock block (bootstrap file)
        yield return (1029, 3);                               // unaligned, inside the bootstrap
        yield return (dataStart, 256 << 10);                  // nbdcopy's read size, from the blob file
        yield return (dataStart + 4095, 65_537);              // unaligned inside the data
        yield return (dataStart - 4096, 8192);                // hole and data: copied
        yield return (dataStart + (1 << 20), 1 << 20);        // a whole pipe's worth
        yield return (dataStart + 4096, 3 << 20);             // more than a pipe holds: copied
        yield return (dataEnd - 5000, 5000);                  // the device's last bytes, block padding included
    }

    [Fact]
    public void Simple_replies_of_file_backed_ranges_equal_the_device_and_are_spliced()
    {
        using var client = new NbdTestClient(Socket);
        client.Greet();
        Assert.Equal(1u, client.Go("img"));
        ulong cookie = 0;
        foreach ((long offset, int length) in Ranges())
        {
            client.SendRequest(0, ++cookie, (ulong)offset, (uint)length);
            Assert.Equal((0u, cookie), client.ReceiveSimpleReply());
            Assert.True(_expected.AsSpan((int)offset, length).SequenceEqual(client.Receive(length)), $"read of {length} at {offset}");
        }

        // At least the 256 KiB read and the device's tail went by splice (the others depend on the pipe size the
        // kernel grants: 1 MiB asked).
        Assert.True(_server.SplicedReads >= 2, $"{_server.SplicedReads} spliced reads");
    }

    [Fact]
    public void Structured_replies_of_file_backed_ranges_are_one_data_chunk_each()
    {
        using var client = new NbdTestClient(Socket);
        client.Greet();
        client.SendOption(NbdTestClient.OptStructuredReply, []);
        Assert.Equal(1u, client.ReceiveOptionReply().Type);
        Assert.Equal(1u, client.Go("img"));
        ulong cookie = 0;
        foreach ((long offset, int length) in Ranges())
        {
            client.SendRequest(0, ++cookie, (ulong)offset, (uint)length);
            var received = new byte[length];
            bool done = false;
            while (!done)
            {
                (ushort flags, ushort type, ulong replyCookie, byte[] payload) = client.ReceiveChunk();
                Assert.Equal(cookie, replyCookie);
                done = (flags & 1) != 0;
                long at = (long)BinaryPrimitives.ReadUInt64BigEndian(payload);
                if (type == 1) payload.AsSpan(8).CopyTo(received.AsSpan((int)(at - offset)));          // OFFSET_DATA
                else Assert.Equal(2, type);                                                          // OFFSET_HOLE: zeros
            }

            Assert.True(_expected.AsSpan((int)offset, length).SequenceEqual(received), $"structured read of {length} at {offset}");
        }

        Assert.True(_server.SplicedReads >= 2, $"{_server.SplicedReads} spliced reads");
    }

    [Fact]
    public void Only_ranges_stored_as_they_are_in_one_file_map_to_it()
    {
        long dataStart = Data.StartBlock * BlockAddressSpace.BlockSize;
        long dataEnd = Data.EndBlock * BlockAddressSpace.BlockSize;
        Assert.Contains(0L, _device.PatchedBlocks);
        Assert.False(_device.TryMapToFile(0, 4096, out _, out _));                       // the patched device table
        Assert.False(_device.TryMapToFile(dataStart - 4096, 8192, out _, out _));        // hole and data
        Assert.True(_device.TryMapToFile(dataStart + 4095, 65_537, out var file, out long at));
        Assert.Equal(4095, at);
        Assert.Equal(new FileInfo(_blob).Length, RandomAccess.GetLength(file));
        Assert.True(_device.TryMapToFile(dataEnd - 5000, 5000, out _, out at));         // the blob file's last bytes
        Assert.Equal(new FileInfo(_blob).Length - 5000, at);
        Assert.False(_device.TryMapToFile(dataEnd - 4096, 8192, out _, out _));          // past the device
    }

    [Fact]
    public void Nbdcopy_of_the_blobdev_export_holds_the_bootstrap_and_the_blob_file_where_they_lie()
    {
        // libnbd's nbdcopy: four connections, many requests in flight on each (the request loops and their pipes).
        string copy = _dir.Combine("copy.img");
        TreeBuilder.Run("nbdcopy", $"nbd+unix:///img?socket={Socket}", copy);
        byte[] device = File.ReadAllBytes(copy);
        Assert.Equal(_device.Size, device.Length);

        // Built from the two files, not from our reader: the bootstrap after its patched device-table block,
        // zeros up to the data extent, the blob file there, zeros to the end (patched blocks are checked by the
        // kernel mount tests: NbdKernelMountTests).
        byte[] bootstrap = File.ReadAllBytes(_dir.Combine("meta.erofs"));
        byte[] blob = File.ReadAllBytes(_blob);
        int dataStart = (int)(Data.StartBlock * BlockAddressSpace.BlockSize);
        for (int at = 0; at < bootstrap.Length; at += BlockAddressSpace.BlockSize)
        {
            if (_device.PatchedBlocks.Contains(at / BlockAddressSpace.BlockSize)) continue;
            int n = Math.Min(BlockAddressSpace.BlockSize, bootstrap.Length - at);
            Assert.True(bootstrap.AsSpan(at, n).SequenceEqual(device.AsSpan(at, n)), $"bootstrap block {at / BlockAddressSpace.BlockSize}");
        }

        Assert.True(device.AsSpan(bootstrap.Length, dataStart - bootstrap.Length).IndexOfAnyExcept((byte)0) < 0, "hole");
        Assert.True(blob.AsSpan().SequenceEqual(device.AsSpan(dataStart, blob.Length)), "blob file");
        Assert.True(device.AsSpan(dataStart + blob.Length).IndexOfAnyExcept((byte)0) < 0, "padding");
        Assert.True(_expected.AsSpan().SequenceEqual(device), "the device as BlockAddressSpace.Read builds it");
        Assert.True(_server.SplicedReads > 0, "nothing was spliced");
    }

    [Fact]
    public void A_blob_file_cut_short_answers_eio_and_the_connection_stays_in_step()
    {
        using var client = new NbdTestClient(Socket);
        client.Greet();
        Assert.Equal(1u, client.Go("img"));
        long dataStart = Data.StartBlock * BlockAddressSpace.BlockSize;
        // truncate(1), not a FileStream: .NET's share lock would refuse to open the file the backend holds.
        TreeBuilder.Run("truncate", "-s", "1M", _blob);

        client.SendRequest(0, 1, (ulong)(dataStart + (2 << 20)), 256 << 10);
        Assert.Equal((5u, 1ul), client.ReceiveSimpleReply());                // EIO, no data
        client.SendRequest(0, 2, 0, 4096);
        Assert.Equal((0u, 2ul), client.ReceiveSimpleReply());
        Assert.True(_expected.AsSpan(0, 4096).SequenceEqual(client.Receive(4096)));
        client.SendRequest(0, 3, (ulong)dataStart, 4096);                    // still inside the short file
        Assert.Equal((0u, 3ul), client.ReceiveSimpleReply());
        Assert.True(_expected.AsSpan((int)dataStart, 4096).SequenceEqual(client.Receive(4096)));
    }

    public void Dispose()
    {
        _server.Dispose();
        _exports.Dispose();
        _caches.Dispose();
        _dir.Dispose();
    }
}
