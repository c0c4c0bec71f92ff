namespace Nydus.Actors.Storage.Digest;

/// <summary>
/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78). Used for chunk checks (CRC-32/ISCSI: init and final
/// XOR 0xFFFFFFFF) and for the EROFS superblock checksum, which keeps the raw register (no final XOR).
/// </summary>
public static class Crc32C
{
    private static readonly uint[] Table = BuildTable();

    /// <summary>The standard CRC-32/ISCSI value of <paramref name="data"/>.</summary>
    public static uint Compute(ReadOnlySpan<byte> data) => ~Update(0xFFFF_FFFFu, data);

    /// <summary>Advances a raw CRC register over <paramref name="data"/> (no initial or final inversion).</summary>
    public static uint Update(uint register, ReadOnlySpan<byte> data)
    {
        uint crc = register;
        foreach (byte b in data)
        {
            crc = Table[(crc ^ b) & 0xFF] ^ (crc >> 8);
        }

        return crc;
    }

    private static uint[] BuildTable()
    {
        var table = new uint[256];
        for (uint i = 0; i < 256; i++)
        {
            uint c = i;
            for (int k = 0; k < 8; k++)
            {
                c = (c & 1) != 0 ? 0x82F6_3B78u ^ (c >> 1) : c >> 1;
            }

            table[i] = c;
        }

        return table;
    }
}
