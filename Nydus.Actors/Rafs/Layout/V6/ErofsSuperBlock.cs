using System.Buffers.Binary;
using Nydus.Actors.Storage.Digest;

namespace Nydus.Actors.Rafs.Layout.V6;

/// <summary>The 128-byte EROFS superblock at offset 1024 (erofs_fs.h <c>erofs_super_block</c>).</summary>
internal sealed class ErofsSuperBlock
{
    public const int Offset = 1024;
    public const int Size = 128;
    public const uint Magic = 0xE0F5_E1E2;

    public const uint CompatSbChecksum = 0x1;
    public const uint CompatRafsV6 = 0x4000_0000;

    public const uint IncompatLz4ZeroPadding = 0x1;
    public const uint IncompatComprCfgs = 0x2;
    public const uint IncompatChunkedFile = 0x4;
    public const uint IncompatDeviceTable = 0x8;
    public const uint IncompatZtailpacking = 0x10;

    private ErofsSuperBlock()
    {
    }

    public uint Checksum { get; private init; }

    public uint FeatureCompat { get; private init; }

    public int BlockSizeBits { get; private init; }

    public int BlockSize => 1 << BlockSizeBits;

    public ulong RootNid { get; private init; }

    public ulong Inodes { get; private init; }

    public ulong BuildTime { get; private init; }

    public uint BuildTimeNanoseconds { get; private init; }

    public uint MetaBlockAddress { get; private init; }

    public uint XattrBlockAddress { get; private init; }

    public uint FeatureIncompat { get; private init; }

    public ushort ExtraDevices { get; private init; }

    public ushort DeviceTableSlotOffset { get; private init; }

    public bool IsRafsV6 => (FeatureCompat & CompatRafsV6) != 0;

    public static ErofsSuperBlock Load(ImageData data)
    {
        ReadOnlySpan<byte> s = data.Span(Offset, Size, "EROFS superblock");
        var sb = new ErofsSuperBlock
        {
            Checksum = BinaryPrimitives.ReadUInt32LittleEndian(s.Slice(4)),
            FeatureCompat = BinaryPrimitives.ReadUInt32LittleEndian(s.Slice(8)),
            BlockSizeBits = s[12],
            RootNid = BinaryPrimitives.ReadUInt16LittleEndian(s.Slice(14)),
            Inodes = BinaryPrimitives.ReadUInt64LittleEndian(s.Slice(16)),
            BuildTime = BinaryPrimitives.ReadUInt64LittleEndian(s.Slice(24)),
            BuildTimeNanoseconds = BinaryPrimitives.ReadUInt32LittleEndian(s.Slice(32)),
            MetaBlockAddress = BinaryPrimitives.ReadUInt32LittleEndian(s.Slice(40)),
            XattrBlockAddress = BinaryPrimitives.ReadUInt32LittleEndian(s.Slice(44)),
            FeatureIncompat = BinaryPrimitives.ReadUInt32LittleEndian(s.Slice(80)),
            ExtraDevices = BinaryPrimitives.ReadUInt16LittleEndian(s.Slice(86)),
            DeviceTableSlotOffset = BinaryPrimitives.ReadUInt16LittleEndian(s.Slice(88)),
        };
        sb.Validate(data, s[13]);
        return sb;
    }

    private void Validate(ImageData data, byte extSlots)
    {
        if (BlockSizeBits != 12 && !(IsRafsV6 && BlockSizeBits == 9))
        {
            data.Throw(RafsErrorKind.Unsupported, $"unsupported EROFS block size bits {BlockSizeBits} (only 4 KiB blocks)");
        }

        const uint compressionBits = IncompatLz4ZeroPadding | IncompatComprCfgs | IncompatZtailpacking;
        if ((FeatureIncompat & compressionBits) != 0)
        {
            data.Throw(RafsErrorKind.Unsupported,
                $"compressed EROFS images are not supported (feature_incompat 0x{FeatureIncompat:x} has LZ4_0PADDING, " +
                "COMPR_CFGS or ZTAILPACKING)");
        }

        if ((FeatureIncompat & ~(IncompatChunkedFile | IncompatDeviceTable)) != 0)
        {
            data.Throw(RafsErrorKind.Unsupported, $"unknown EROFS feature_incompat bits 0x{FeatureIncompat:x}");
        }

        if (IsRafsV6)
        {
            if (Checksum != 0)
            {
                data.Throw(RafsErrorKind.InvalidSuperBlock, $"RAFS v6 superblock checksum 0x{Checksum:x} must be 0");
            }

            if (extSlots != 0)
            {
                data.Throw(RafsErrorKind.InvalidSuperBlock, $"RAFS v6 superblock sb_extslots {extSlots} must be 0");
            }

            if (FeatureIncompat != (IncompatChunkedFile | IncompatDeviceTable))
            {
                data.Throw(RafsErrorKind.InvalidSuperBlock,
                    $"RAFS v6 feature_incompat 0x{FeatureIncompat:x} must be 0xc (CHUNKED_FILE | DEVICE_TABLE)");
            }
        }
        else if ((FeatureCompat & CompatSbChecksum) != 0 && data.Length >= BlockSize)
        {
            uint actual = ComputeChecksum(data.Span(Offset, BlockSize - Offset, "superblock block"));
            if (actual != Checksum)
            {
                data.Throw(RafsErrorKind.InvalidSuperBlock,
                    $"EROFS superblock checksum 0x{Checksum:x} does not match computed 0x{actual:x}");
            }
        }
    }

    /// <summary>CRC32C over bytes [1024, block end) with the checksum field zeroed, no final XOR (mkfs.erofs).</summary>
    private static uint ComputeChecksum(ReadOnlySpan<byte> block)
    {
        uint crc = Crc32C.Update(0xFFFF_FFFF, block.Slice(0, 4));
        crc = Crc32C.Update(crc, stackalloc byte[4]);
        return Crc32C.Update(crc, block.Slice(8));
    }
}
