namespace Nydus.Actors.VirtioFs;

/// <summary>Front-end requests of the vhost-user protocol (qemu docs/interop/vhost-user.rst) this backend knows.</summary>
public enum VhostUserRequest : uint
{
    GetFeatures = 1,
    SetFeatures = 2,
    SetOwner = 3,
    ResetOwner = 4,
    SetMemTable = 5,
    SetLogBase = 6,
    SetLogFd = 7,
    SetVringNum = 8,
    SetVringAddr = 9,
    SetVringBase = 10,
    GetVringBase = 11,
    SetVringKick = 12,
    SetVringCall = 13,
    SetVringErr = 14,
    GetProtocolFeatures = 15,
    SetProtocolFeatures = 16,
    GetQueueNum = 17,
    SetVringEnable = 18,
    GetConfig = 24,
    SetConfig = 25,
    GetMaxMemSlots = 36,
    ResetDevice = 34,
}

/// <summary>Wire constants of vhost-user and the virtio feature bits this backend offers.</summary>
public static class VhostUserProtocol
{
    public const int HeaderSize = 12;

    /// <summary>Largest payload accepted (SET_MEM_TABLE with 8 regions is 8 + 8 * 32 bytes; config space 256 + 12).</summary>
    public const int MaxPayload = 4096;

    public const uint FlagVersion = 0x1;
    public const uint FlagReply = 0x4;
    public const uint FlagNeedReply = 0x8;

    /// <summary>In SET_VRING_KICK/CALL/ERR: no descriptor follows (polling mode).</summary>
    public const ulong VringInvalidFd = 0x100;
    public const ulong VringIndexMask = 0xff;

    public const int FeatureRingIndirectDesc = 28;
    public const int FeatureProtocolFeatures = 30;
    public const int FeatureVersion1 = 32;

    public const int ProtocolFeatureMq = 0;
    public const int ProtocolFeatureReplyAck = 3;

    /// <summary>Virtio features offered: virtio 1.x, indirect descriptors, and vhost-user's protocol features.
    /// EVENT_IDX and packed rings are not offered (the frontend then uses split rings and plain notification flags).</summary>
    public const ulong OfferedFeatures =
        (1UL << FeatureVersion1) | (1UL << FeatureRingIndirectDesc) | (1UL << FeatureProtocolFeatures);

    /// <summary>Protocol features offered: several queues (qemu asks GET_QUEUE_NUM with it, and needs it for more than
    /// one) and REPLY_ACK (the frontend may ask for an acknowledgement of any request).</summary>
    public const ulong OfferedProtocolFeatures = (1UL << ProtocolFeatureMq) | (1UL << ProtocolFeatureReplyAck);
}
