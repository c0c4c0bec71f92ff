using System.Buffers.Binary;
using System.Text;

namespace Nydus.Actors.Fscache;

/// <summary>
/// Where cachefiles keeps an object's file in the cache dir (fs/cachefiles/namei.c, fs/fscache/volume.c): a volume
/// is the directory <c>DIR/cache/I&lt;volume key&gt;</c>, and a cookie's file is <c>@&lt;hash byte&gt;/D&lt;cookie key&gt;</c>
/// in it, the fan-out byte being the kernel's <c>fscache_hash</c> of the cookie key salted with the volume key's hash.
/// EROFS's volume keys are <c>erofs,&lt;domain_id or fsid&gt;</c>. Upstream's cull (service/src/fs_cache.rs) computes
/// the same paths to find a blob's files; the simulated kernel lays its cache files out by them too.
/// </summary>
public static class CachefilesLayout
{
    /// <summary>The prefix of EROFS volume directories in <c>DIR/cache</c>.</summary>
    public const string ErofsVolumePrefix = "Ierofs,";

    /// <summary>The directory that holds the volumes of cache dir <paramref name="cacheDir"/>.</summary>
    public static string VolumesRoot(string cacheDir) => Path.Combine(cacheDir, "cache");

    /// <summary>A volume's directory.</summary>
    public static string VolumeDir(string cacheDir, string volumeKey) => Path.Combine(VolumesRoot(cacheDir), "I" + volumeKey);

    /// <summary>The directory (in a volume's directory) and the file name of a cookie's cache file.</summary>
    public static (string Directory, string FileName) CookieFile(string volumeDir, string volumeKey, string cookieKey)
    {
        // The volume key is hashed as the kernel stores it: a length byte, the key, zero padding to 4 bytes.
        byte[] key = Encoding.UTF8.GetBytes(volumeKey);
        var volume = new byte[RoundUp4(key.Length + 2)];
        volume[0] = (byte)key.Length;
        key.CopyTo(volume, 1);
        uint volumeHash = Hash(0, volume);

        byte[] cookie = Encoding.UTF8.GetBytes(cookieKey);
        var padded = new byte[RoundUp4(cookie.Length)];
        cookie.CopyTo(padded, 0);
        uint hash = Hash(volumeHash, padded);
        return (Path.Combine(volumeDir, $"@{(byte)hash:x2}"), "D" + cookieKey);
    }

    /// <summary>A cookie's cache file, absolute.</summary>
    public static string CookiePath(string cacheDir, string volumeKey, string cookieKey)
    {
        var (directory, name) = CookieFile(VolumeDir(cacheDir, volumeKey), volumeKey, cookieKey);
        return Path.Combine(directory, name);
    }

    private static int RoundUp4(int n) => (n + 3) / 4 * 4;

    /// <summary>The kernel's <c>fscache_hash</c> (fs/fscache/volume.c) over little-endian 32-bit words.</summary>
    private static uint Hash(uint salt, ReadOnlySpan<byte> data)
    {
        uint x = 0, y = salt;
        for (int i = 0; i + 4 <= data.Length; i += 4)
        {
            x ^= BinaryPrimitives.ReadUInt32LittleEndian(data[i..]);
            y ^= x;
            x = uint.RotateLeft(x, 7);
            x += y;
            y = uint.RotateLeft(y, 20);
            y *= 9;
        }
        return Hash32(y ^ Hash32(x));
    }

    /// <summary>The kernel's <c>hash_32</c> with 32 bits (a multiplication by GOLDEN_RATIO_32).</summary>
    private static uint Hash32(uint value) => value * 0x61C88647u;
}
