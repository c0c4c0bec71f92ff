using Nydus.Actors.Fscache;
using Xunit;

namespace Nydus.Actors.Tests.Fscache;

/// <summary>The uapi layout of include/uapi/linux/cachefiles.h, byte by byte (little-endian x86-64).</summary>
public sealed class CachefilesMessageTests
{
    [Fact]
    public void An_open_request_is_read_field_by_field()
    {
        byte[] bytes =
        [
            7, 0, 0, 0, /* msg_id */ 0, 0, 0, 0, /* OPEN */ 49, 0, 0, 0, /* len */ 3, 0, 0, 0, /* object_id */
            9, 0, 0, 0, /* volume_key_size, NUL included */ 8, 0, 0, 0, /* cookie_key_size */
            42, 0, 0, 0, /* fd */ 0, 0, 0, 0, /* flags */
            (byte)'e', (byte)'r', (byte)'o', (byte)'f', (byte)'s', (byte)',', (byte)'d', (byte)'1', 0,
            (byte)'b', (byte)'l', (byte)'o', (byte)'b', (byte)'-', (byte)'0', (byte)'0', (byte)'1',
        ];
        var message = CachefilesMessage.Parse(bytes);
        Assert.Equal(7u, message.MessageId);
        Assert.Equal(CachefilesOpcode.Open, message.Opcode);
        Assert.Equal(3u, message.ObjectId);
        Assert.Equal(new CachefilesOpen("erofs,d1", "blob-001", 42, 0), message.Open);
        Assert.Equal("d1", message.Open!.DomainId);
        Assert.Equal(bytes, CachefilesMessage.EncodeOpen(7, 3, "erofs,d1", "blob-001", 42));
    }

    [Fact]
    public void Read_and_close_requests_are_read_field_by_field()
    {
        byte[] read =
        [
            9, 0, 0, 0, 2, 0, 0, 0, 32, 0, 0, 0, 5, 0, 0, 0,
            0, 0x10, 0, 0, 1, 0, 0, 0, /* off = 0x1_0000_1000 */ 0, 0, 2, 0, 0, 0, 0, 0, /* len = 0x20000 */
        ];
        var message = CachefilesMessage.Parse(read);
        Assert.Equal((9u, CachefilesOpcode.Read, 5u), (message.MessageId, message.Opcode, message.ObjectId));
        Assert.Equal(new CachefilesRead(0x1_0000_1000, 0x20000), message.Read);
        Assert.Equal(read, CachefilesMessage.EncodeRead(9, 5, 0x1_0000_1000, 0x20000));

        byte[] close = [10, 0, 0, 0, 1, 0, 0, 0, 16, 0, 0, 0, 5, 0, 0, 0];
        Assert.Equal(new CachefilesMessage(10, CachefilesOpcode.Close, 5), CachefilesMessage.Parse(close));
        Assert.Equal(close, CachefilesMessage.EncodeClose(10, 5));
    }

    [Fact]
    public void Replies_and_the_ioctl_number_match_the_kernel()
    {
        Assert.Equal("copen 7,36864", CachefilesCommands.Copen(7, 36864));
        Assert.Equal("copen 8,-2", CachefilesCommands.Copen(8, -2));
        Assert.True(CachefilesCommands.TryParseCopen("copen 8,-2", out uint id, out long size));
        Assert.Equal((8u, -2L), (id, size));
        // _IOW(0x98, 1, int)
        Assert.Equal(0x40049801u, CachefilesCommands.ReadCompleteIoctl);
        Assert.Equal("bind ondemand", CachefilesCommands.BindOnDemand);
    }

    [Fact]
    public void Malformed_requests_are_refused_with_what_is_wrong()
    {
        var shortHeader = Assert.Throws<CachefilesProtocolException>(() => CachefilesMessage.Parse(new byte[15]));
        Assert.Contains("shorter than the 16-byte header", shortHeader.Message);
        Assert.Null(shortHeader.Header);

        byte[] unknown = [1, 0, 0, 0, 9, 0, 0, 0, 16, 0, 0, 0, 1, 0, 0, 0];
        Assert.Contains("unknown opcode 9", Assert.Throws<CachefilesProtocolException>(() => CachefilesMessage.Parse(unknown)).Message);

        byte[] wrongLength = [1, 0, 0, 0, 1, 0, 0, 0, 17, 0, 0, 0, 1, 0, 0, 0];
        Assert.Contains("header length 17", Assert.Throws<CachefilesProtocolException>(() => CachefilesMessage.Parse(wrongLength)).Message);

        byte[] shortRead = [1, 0, 0, 0, 2, 0, 0, 0, 24, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        Assert.Contains("expected 16", Assert.Throws<CachefilesProtocolException>(() => CachefilesMessage.Parse(shortRead)).Message);

        // Key sizes near 2^32 must not wrap around the bounds check; the header and fd are kept to answer and close.
        byte[] open = CachefilesMessage.EncodeOpen(4, 2, "erofs,d", "b", 77);
        open[16] = 0xff; open[17] = 0xff; open[18] = 0xff; open[19] = 0xff;
        var overflow = Assert.Throws<CachefilesProtocolException>(() => CachefilesMessage.Parse(open));
        Assert.Equal(CachefilesOpcode.Open, overflow.Header!.Opcode);
        Assert.Equal(4u, overflow.Header.MessageId);
        Assert.Equal(77, overflow.Fd);
    }
}
