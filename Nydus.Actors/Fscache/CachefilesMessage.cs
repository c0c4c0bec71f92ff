using System.Buffers.Binary;
using System.Globalization;
using System.Text;

namespace Nydus.Actors.Fscache;

/// <summary>The request kinds of <c>include/uapi/linux/cachefiles.h</c> (<c>enum cachefiles_opcode</c>).</summary>
public enum CachefilesOpcode : uint
{
    Open = 0,
    Close = 1,
    Read = 2,
}

/// <summary>
/// One request read from <c>/dev/cachefiles</c> in on-demand mode, as laid out by the kernel's uapi header
/// (all fields little-endian on the architectures nydus runs on, native order in the header):
/// <code>
/// struct cachefiles_msg  { __u32 msg_id; __u32 opcode; __u32 len; __u32 object_id; __u8 data[]; }   // 16 bytes
/// struct cachefiles_open { __u32 volume_key_size; __u32 cookie_key_size; __u32 fd; __u32 flags; __u8 data[]; }
/// struct cachefiles_read { __u64 off; __u64 len; }
/// </code>
/// <c>len</c> counts the header. An OPEN's data is the volume key (<c>volume_key_size</c> bytes, NUL included:
/// <c>erofs,&lt;domain or fsid&gt;</c>) then the cookie key (<c>cookie_key_size</c> bytes, no NUL: the blob id).
/// CLOSE has no payload. Pure parsing and encoding: no I/O.
/// </summary>
public sealed record CachefilesMessage(uint MessageId, CachefilesOpcode Opcode, uint ObjectId)
{
    public const int HeaderSize = 16;
    public const int OpenHeaderSize = 16;
    public const int ReadSize = 16;

    /// <summary><c>CACHEFILES_MSG_MAX_SIZE</c>: the kernel never sends a longer message (read buffers are this big).</summary>
    public const int MaxSize = 1024;

    /// <summary>EROFS names its fscache volumes <c>erofs,&lt;domain_id or fsid&gt;</c>.</summary>
    public const string ErofsVolumePrefix = "erofs,";

    /// <summary>Set for <see cref="CachefilesOpcode.Open"/>.</summary>
    public CachefilesOpen? Open { get; init; }

    /// <summary>Set for <see cref="CachefilesOpcode.Read"/>.</summary>
    public CachefilesRead? Read { get; init; }

    /// <summary>
    /// Parses one message exactly as read (one read(2) returns one message). Throws
    /// <see cref="CachefilesProtocolException"/> naming what is wrong; when the header itself was readable the
    /// exception carries it, so that an OPEN can still be answered.
    /// </summary>
    public static CachefilesMessage Parse(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length < HeaderSize)
            throw new CachefilesProtocolException($"message of {bytes.Length} bytes is shorter than the {HeaderSize}-byte header");
        uint id = BinaryPrimitives.ReadUInt32LittleEndian(bytes);
        uint opcode = BinaryPrimitives.ReadUInt32LittleEndian(bytes[4..]);
        uint length = BinaryPrimitives.ReadUInt32LittleEndian(bytes[8..]);
        uint objectId = BinaryPrimitives.ReadUInt32LittleEndian(bytes[12..]);
        var header = new CachefilesMessage(id, (CachefilesOpcode)opcode, objectId);
        if (length != bytes.Length)
            throw new CachefilesProtocolException($"message {id}: header length {length} but {bytes.Length} bytes were read", header);
        var body = bytes[HeaderSize..];
        switch ((CachefilesOpcode)opcode)
        {
            case CachefilesOpcode.Open:
                return header with { Open = ParseOpen(body, header) };
            case CachefilesOpcode.Close:
                return header;
            case CachefilesOpcode.Read:
                if (body.Length < ReadSize)
                    throw new CachefilesProtocolException($"READ {id}: payload of {body.Length} bytes, expected {ReadSize}", header);
                return header with
                {
                    Read = new CachefilesRead(BinaryPrimitives.ReadUInt64LittleEndian(body), BinaryPrimitives.ReadUInt64LittleEndian(body[8..])),
                };
            default:
                throw new CachefilesProtocolException($"message {id}: unknown opcode {opcode}", header);
        }
    }

    private static CachefilesOpen ParseOpen(ReadOnlySpan<byte> body, CachefilesMessage header)
    {
        if (body.Length < OpenHeaderSize)
            throw new CachefilesProtocolException($"OPEN {header.MessageId}: payload of {body.Length} bytes is shorter than {OpenHeaderSize}", header);
        uint volumeSize = BinaryPrimitives.ReadUInt32LittleEndian(body);
        uint cookieSize = BinaryPrimitives.ReadUInt32LittleEndian(body[4..]);
        int fd = BinaryPrimitives.ReadInt32LittleEndian(body[8..]);
        uint flags = BinaryPrimitives.ReadUInt32LittleEndian(body[12..]);
        // ulong: two 32-bit sizes cannot overflow it.
        if ((ulong)volumeSize + cookieSize > (ulong)(body.Length - OpenHeaderSize))
            throw new CachefilesProtocolException(
                $"OPEN {header.MessageId}: keys of {volumeSize} + {cookieSize} bytes do not fit the {body.Length - OpenHeaderSize} bytes sent", header)
            { Fd = fd };
        var keys = body[OpenHeaderSize..];
        var strict = new UTF8Encoding(false, throwOnInvalidBytes: true);
        try
        {
            string volume = strict.GetString(keys[..(int)volumeSize]).TrimEnd('\0');
            string cookie = strict.GetString(keys.Slice((int)volumeSize, (int)cookieSize));
            return new CachefilesOpen(volume, cookie, fd, flags);
        }
        catch (DecoderFallbackException)
        {
            throw new CachefilesProtocolException($"OPEN {header.MessageId}: volume or cookie key is not UTF-8", header) { Fd = fd };
        }
    }

    /// <summary>Encodes an OPEN as the kernel sends it (the volume key gets its NUL).</summary>
    public static byte[] EncodeOpen(uint messageId, uint objectId, string volumeKey, string cookieKey, int fd, uint flags = 0)
    {
        byte[] volume = Encoding.UTF8.GetBytes(volumeKey + "\0");
        byte[] cookie = Encoding.UTF8.GetBytes(cookieKey);
        var bytes = new byte[HeaderSize + OpenHeaderSize + volume.Length + cookie.Length];
        WriteHeader(bytes, messageId, CachefilesOpcode.Open, objectId);
        var body = bytes.AsSpan(HeaderSize);
        BinaryPrimitives.WriteUInt32LittleEndian(body, (uint)volume.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(body[4..], (uint)cookie.Length);
        BinaryPrimitives.WriteInt32LittleEndian(body[8..], fd);
        BinaryPrimitives.WriteUInt32LittleEndian(body[12..], flags);
        volume.CopyTo(body[OpenHeaderSize..]);
        cookie.CopyTo(body[(OpenHeaderSize + volume.Length)..]);
        return bytes;
    }

    public static byte[] EncodeClose(uint messageId, uint objectId)
    {
        var bytes = new byte[HeaderSize];
        WriteHeader(bytes, messageId, CachefilesOpcode.Close, objectId);
        return bytes;
    }

    public static byte[] EncodeRead(uint messageId, uint objectId, ulong offset, ulong length)
    {
        var bytes = new byte[HeaderSize + ReadSize];
        WriteHeader(bytes, messageId, CachefilesOpcode.Read, objectId);
        BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(HeaderSize), offset);
        BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(HeaderSize + 8), length);
        return bytes;
    }

    /// <summary>Where an OPEN's fd field sits in the message (a simulated device installs the received fd there).</summary>
    public const int OpenFdOffset = HeaderSize + 8;

    private static void WriteHeader(Span<byte> bytes, uint messageId, CachefilesOpcode opcode, uint objectId)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(bytes, messageId);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes[4..], (uint)opcode);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes[8..], (uint)bytes.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes[12..], objectId);
    }
}

/// <param name="VolumeKey">Without its trailing NUL: <c>erofs,&lt;domain&gt;</c>.</param>
/// <param name="CookieKey">The blob id (bootstrap id or data blob id).</param>
/// <param name="Fd">The anonymous fd the kernel installed in the daemon for this object: written with the object's
/// data, closed on CLOSE.</param>
public sealed record CachefilesOpen(string VolumeKey, string CookieKey, int Fd, uint Flags)
{
    /// <summary>The domain: the volume key without EROFS's prefix (upstream strips <c>erofs,</c> when present).</summary>
    public string DomainId => VolumeKey.StartsWith(CachefilesMessage.ErofsVolumePrefix, StringComparison.Ordinal)
        ? VolumeKey[CachefilesMessage.ErofsVolumePrefix.Length..]
        : VolumeKey;
}

public sealed record CachefilesRead(ulong Offset, ulong Length);

/// <summary>The daemon's side of the conversation: commands written to the device, and the read completion ioctl.</summary>
public static class CachefilesCommands
{
    /// <summary><c>CACHEFILES_IOC_READ_COMPLETE</c> = <c>_IOW(0x98, 1, int)</c>, issued on the object's anonymous fd
    /// with the READ's msg_id.</summary>
    public const uint ReadCompleteIoctl = (1u << 30) | (sizeof(int) << 16) | (0x98 << 8) | 1;

    /// <summary>The answer to an OPEN: the object's size, or a negative errno refusing it.</summary>
    public static string Copen(uint messageId, long sizeOrNegativeErrno) =>
        string.Create(CultureInfo.InvariantCulture, $"copen {messageId},{sizeOrNegativeErrno}");

    public static string Dir(string path) => "dir " + path;
    public static string Tag(string tag) => "tag " + tag;
    public const string BindOnDemand = "bind ondemand";

    /// <summary>After a takeover: the kernel marks every request not yet answered as new, to be read again.</summary>
    public const string Restore = "restore";

    /// <summary>Parses a <see cref="Copen"/> reply (the simulated kernel's side); false when it is not one.</summary>
    public static bool TryParseCopen(string text, out uint messageId, out long size)
    {
        messageId = 0;
        size = 0;
        if (!text.StartsWith("copen ", StringComparison.Ordinal)) return false;
        var parts = text[6..].Split(',');
        return parts.Length == 2
            && uint.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out messageId)
            && long.TryParse(parts[1], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out size);
    }
}

/// <summary>A message from the device that cannot be served as it is.</summary>
public sealed class CachefilesProtocolException(string message, CachefilesMessage? header = null) : Exception(message)
{
    /// <summary>The header, when it could be read (an OPEN is then still answered, with an error).</summary>
    public CachefilesMessage? Header { get; } = header;

    /// <summary>The anonymous fd of a malformed OPEN (the daemon owns it and must close it), or -1.</summary>
    public int Fd { get; init; } = -1;
}
