namespace Nydus.Actors.Block.Nbd;

/// <summary>
/// Constants of the NBD protocol (github.com/NetworkBlockDevice/nbd doc/proto.md), newstyle fixed handshake and
/// transmission phase. All integers on the wire are big endian.
/// </summary>
internal static class NbdProtocol
{
    public const ulong InitMagic = 0x4e42444d41474943;        // "NBDMAGIC"
    public const ulong OptionMagic = 0x49484156454F5054;      // "IHAVEOPT"
    public const ulong OptionReplyMagic = 0x0003e889045565a9;
    public const uint RequestMagic = 0x25609513;
    public const uint SimpleReplyMagic = 0x67446698;
    public const uint StructuredReplyMagic = 0x668e33ef;

    // Handshake flags (server) and client flags.
    public const ushort FlagFixedNewstyle = 1;
    public const ushort FlagNoZeroes = 2;
    public const uint ClientFlagFixedNewstyle = 1;
    public const uint ClientFlagNoZeroes = 2;

    // Options.
    public const uint OptExportName = 1;
    public const uint OptAbort = 2;
    public const uint OptList = 3;
    public const uint OptStartTls = 5;
    public const uint OptInfo = 6;
    public const uint OptGo = 7;
    public const uint OptStructuredReply = 8;
    public const uint OptListMetaContext = 9;
    public const uint OptSetMetaContext = 10;

    // Option replies.
    public const uint RepAck = 1;
    public const uint RepServer = 2;
    public const uint RepInfo = 3;
    public const uint RepMetaContext = 4;
    public const uint RepErrUnsup = 0x8000_0001;
    public const uint RepErrPolicy = 0x8000_0002;
    public const uint RepErrInvalid = 0x8000_0003;
    public const uint RepErrUnknown = 0x8000_0006;
    public const uint RepErrTooBig = 0x8000_0009;

    // NBD_REP_INFO types.
    public const ushort InfoExport = 0;
    public const ushort InfoName = 1;
    public const ushort InfoDescription = 2;
    public const ushort InfoBlockSize = 3;

    // Transmission flags.
    public const ushort TransHasFlags = 0x1;
    public const ushort TransReadOnly = 0x2;
    public const ushort TransSendDf = 0x80;
    public const ushort TransCanMultiConn = 0x100;

    // Commands and command flags.
    public const ushort CmdRead = 0;
    public const ushort CmdWrite = 1;
    public const ushort CmdDisconnect = 2;
    public const ushort CmdFlush = 3;
    public const ushort CmdTrim = 4;
    public const ushort CmdCache = 5;
    public const ushort CmdWriteZeroes = 6;
    public const ushort CmdBlockStatus = 7;
    public const ushort CmdFlagDontFragment = 0x4;
    public const ushort CmdFlagReqOne = 0x8;

    // Structured reply chunk types and flags.
    public const ushort ReplyFlagDone = 1;
    public const ushort ReplyTypeNone = 0;
    public const ushort ReplyTypeOffsetData = 1;
    public const ushort ReplyTypeOffsetHole = 2;
    public const ushort ReplyTypeBlockStatus = 5;
    public const ushort ReplyTypeError = 0x8001;

    // Errors (errno values the protocol names).
    public const uint EPerm = 1;
    public const uint EIo = 5;
    public const uint EInval = 22;
    public const uint EOverflow = 75;
    public const uint ENotSup = 95;

    // base:allocation states.
    public const uint StateHole = 1;
    public const uint StateZero = 2;

    public const string BaseAllocation = "base:allocation";

    /// <summary>The one meta context id we hand out (base:allocation).</summary>
    public const uint BaseAllocationId = 1;
}
