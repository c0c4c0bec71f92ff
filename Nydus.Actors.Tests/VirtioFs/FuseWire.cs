using System.Buffers.Binary;
using System.Text;

namespace Nydus.Actors.Tests.VirtioFs;

/// <summary>FUSE requests and replies as raw bytes (linux/fuse.h), written independently of the daemon's Abi structs.</summary>
internal static class FuseWire
{
    public const uint Lookup = 1, GetAttr = 3, Open = 14, Read = 15, Init = 26;
    public const int OutHeaderSize = 16;

    public static byte[] Request(uint opcode, ulong unique, ulong nodeId, ReadOnlySpan<byte> body)
    {
        var request = new byte[40 + body.Length];
        BinaryPrimitives.WriteUInt32LittleEndian(request, (uint)request.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(request.AsSpan(4), opcode);
        BinaryPrimitives.WriteUInt64LittleEndian(request.AsSpan(8), unique);
        BinaryPrimitives.WriteUInt64LittleEndian(request.AsSpan(16), nodeId);
        body.CopyTo(request.AsSpan(40));
        return request;
    }

    public static byte[] InitBody()
    {
        var body = new byte[64];
        BinaryPrimitives.WriteUInt32LittleEndian(body, 7);
        BinaryPrimitives.WriteUInt32LittleEndian(body.AsSpan(4), 38);
        BinaryPrimitives.WriteUInt32LittleEndian(body.AsSpan(8), 128 * 1024);
        return body;
    }

    public static byte[] Name(string name) => Encoding.UTF8.GetBytes(name + "\0");

    public static byte[] GetAttrBody() => new byte[16];

    public static byte[] OpenBody() => new byte[8];

    public static byte[] ReadBody(ulong handle, ulong offset, uint size)
    {
        var body = new byte[40];
        BinaryPrimitives.WriteUInt64LittleEndian(body, handle);
        BinaryPrimitives.WriteUInt64LittleEndian(body.AsSpan(8), offset);
        BinaryPrimitives.WriteUInt32LittleEndian(body.AsSpan(16), size);
        return body;
    }

    /// <summary>(length, error, unique) of a reply's out header.</summary>
    public static (uint Length, int Error, ulong Unique) OutHeader(ReadOnlySpan<byte> reply) =>
        (BinaryPrimitives.ReadUInt32LittleEndian(reply), BinaryPrimitives.ReadInt32LittleEndian(reply[4..]), BinaryPrimitives.ReadUInt64LittleEndian(reply[8..]));
}
