using System.Buffers.Binary;
using System.Net.Sockets;
using System.Text;

namespace Nydus.Actors.Tests.Block;

/// <summary>
/// A deliberately small NBD client speaking raw bytes, for what libnbd's tools will not send: malformed and
/// hostile requests. Every receive is bounded by a 10 s timeout, so a server that fails to answer fails the test
/// instead of hanging it.
/// </summary>
public sealed class NbdTestClient : IDisposable
{
    public const uint OptGo = 7, OptStructuredReply = 8, OptSetMetaContext = 10;

    public NbdTestClient(string unixSocket)
    {
        Socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified) { ReceiveTimeout = 10_000, SendTimeout = 10_000 };
        Socket.Connect(new UnixDomainSocketEndPoint(unixSocket));
    }

    public Socket Socket { get; }

    /// <summary>Reads the greeting and answers it as a fixed newstyle client without zeroes.</summary>
    public void Greet()
    {
        byte[] greeting = Receive(18);
        if (BinaryPrimitives.ReadUInt64BigEndian(greeting) != 0x4e42444d41474943) throw new InvalidDataException("no NBDMAGIC");
        Send(BigEndian32(3));
    }

    public void SendOption(uint option, byte[] data)
    {
        var header = new byte[16];
        BinaryPrimitives.WriteUInt64BigEndian(header, 0x49484156454F5054);
        BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(8), option);
        BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(12), (uint)data.Length);
        Send([.. header, .. data]);
    }

    /// <summary>One option reply: (type, data).</summary>
    public (uint Type, byte[] Data) ReceiveOptionReply()
    {
        byte[] header = Receive(20);
        if (BinaryPrimitives.ReadUInt64BigEndian(header) != 0x0003e889045565a9) throw new InvalidDataException("bad option reply magic");
        uint type = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(12));
        return (type, Receive((int)BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(16))));
    }

    public static byte[] GoData(string name)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(name);
        return [.. BigEndian32((uint)bytes.Length), .. bytes, 0, 0];
    }

    /// <summary>GO on <paramref name="name"/>; returns the final reply type (1 = ACK).</summary>
    public uint Go(string name)
    {
        SendOption(OptGo, GoData(name));
        while (true)
        {
            (uint type, _) = ReceiveOptionReply();
            if (type != 3) return type;
        }
    }

    public void SendRequest(ushort type, ulong cookie, ulong offset, uint length, ushort flags = 0, byte[]? payload = null)
    {
        var request = new byte[28];
        BinaryPrimitives.WriteUInt32BigEndian(request, 0x25609513);
        BinaryPrimitives.WriteUInt16BigEndian(request.AsSpan(4), flags);
        BinaryPrimitives.WriteUInt16BigEndian(request.AsSpan(6), type);
        BinaryPrimitives.WriteUInt64BigEndian(request.AsSpan(8), cookie);
        BinaryPrimitives.WriteUInt64BigEndian(request.AsSpan(16), offset);
        BinaryPrimitives.WriteUInt32BigEndian(request.AsSpan(24), length);
        Send(payload is null ? request : [.. request, .. payload]);
    }

    /// <summary>A simple reply: (error, cookie).</summary>
    public (uint Error, ulong Cookie) ReceiveSimpleReply()
    {
        byte[] reply = Receive(16);
        if (BinaryPrimitives.ReadUInt32BigEndian(reply) != 0x67446698) throw new InvalidDataException("bad simple reply magic");
        return (BinaryPrimitives.ReadUInt32BigEndian(reply.AsSpan(4)), BinaryPrimitives.ReadUInt64BigEndian(reply.AsSpan(8)));
    }

    /// <summary>A structured reply chunk: (flags, type, cookie, payload).</summary>
    public (ushort Flags, ushort Type, ulong Cookie, byte[] Payload) ReceiveChunk()
    {
        byte[] header = Receive(20);
        if (BinaryPrimitives.ReadUInt32BigEndian(header) != 0x668e33ef) throw new InvalidDataException("bad structured reply magic");
        return (BinaryPrimitives.ReadUInt16BigEndian(header.AsSpan(4)), BinaryPrimitives.ReadUInt16BigEndian(header.AsSpan(6)),
            BinaryPrimitives.ReadUInt64BigEndian(header.AsSpan(8)), Receive((int)BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(16))));
    }

    public byte[] Receive(int count)
    {
        var buffer = new byte[count];
        int done = 0;
        while (done < count)
        {
            int n = Socket.Receive(buffer, done, count - done, SocketFlags.None);
            if (n == 0) throw new EndOfStreamException($"server closed the connection after {done} of {count} bytes");
            done += n;
        }

        return buffer;
    }

    /// <summary>True when the server has closed the connection (a receive returns end of stream in time).</summary>
    public bool IsClosedByServer()
    {
        try
        {
            return Socket.Receive(new byte[1]) == 0;
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.ConnectionReset)
        {
            return true;
        }
    }

    public void Send(byte[] data) => Socket.Send(data);

    public static byte[] BigEndian32(uint value)
    {
        var bytes = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(bytes, value);
        return bytes;
    }

    public void Dispose() => Socket.Dispose();
}
