using System.Buffers.Binary;
using System.Numerics;

namespace Nydus.Actors.Storage.Digest;

/// <summary>
/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78). Used for chunk checks (CRC-32/ISCSI: init and final
/// XOR 0xFFFFFFFF) and for the EROFS superblock checksum, which keeps the raw register (no final XOR).
/// The runtime's <see cref="BitOperations.Crc32C(uint, ulong)"/> is the SSE4.2/ARMv8 CRC32C instruction where the
/// CPU has one (a table-free software fallback where not): eight bytes per step instead of one table look-up per byte.
/// </summary>
public static class Crc32C
{
    /// <summary>The standard CRC-32/ISCSI value of <paramref name="data"/>.</summary>
    public static uint Compute(ReadOnlySpan<byte> data) => ~Update(0xFFFF_FFFFu, data);

    /// <summary>Advances a raw CRC register over <paramref name="data"/> (no initial or final inversion).</summary>
    public static uint Update(uint register, ReadOnlySpan<byte> data)
    {
        uint crc = register;
        while (data.Length >= sizeof(ulong))
        {
            // Little-endian: the instruction consumes the lowest byte first, the order of the bytes in memory.
            crc = BitOperations.Crc32C(crc, BinaryPrimitives.ReadUInt64LittleEndian(data));
            data = data[sizeof(ulong)..];
        }
        foreach (byte b in data) crc = BitOperations.Crc32C(crc, b);
        return crc;
    }
}
