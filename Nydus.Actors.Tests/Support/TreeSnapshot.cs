using System.Globalization;
using System.Text;

namespace Nydus.Actors.Tests.Support;

/// <summary>One source file's lstat view plus xattrs, as the expected side of an image comparison.</summary>
public sealed record TreeEntry(
    string Path,
    char Type,
    uint Permissions,
    uint Uid,
    uint Gid,
    long Size,
    uint NLink,
    ulong SourceInode,
    long MtimeSeconds,
    uint MtimeNanoseconds,
    string? LinkTarget,
    uint Rdev,
    SortedDictionary<string, byte[]> Xattrs)
{
    public uint Mode => Permissions | Type switch
    {
        'f' => 0x8000u,
        'd' => 0x4000u,
        'l' => 0xA000u,
        'c' => 0x2000u,
        'b' => 0x6000u,
        'p' => 0x1000u,
        's' => 0xC000u,
        _ => throw new InvalidOperationException($"unknown type {Type}"),
    };
}

/// <summary>Reads a source tree's metadata with find(1) (one process for the whole tree) and libc xattr calls.</summary>
public static class TreeSnapshot
{
    public static Dictionary<string, TreeEntry> Take(string root)
    {
        string output = TreeBuilder.Run("find", root, "-printf", @"/%P\0%y\0%m\0%U\0%G\0%s\0%n\0%i\0%T@\0%l\0");
        string[] fields = output.Split('\0');
        var entries = new Dictionary<string, TreeEntry>(StringComparer.Ordinal);
        for (int i = 0; i + 10 <= fields.Length; i += 10)
        {
            string path = fields[i];
            char type = fields[i + 1][0];
            string full = path == "/" ? root : root + path;
            string[] time = fields[i + 8].Split('.');
            uint nanoseconds = time.Length > 1 ? uint.Parse(time[1].PadRight(9, '0')[..9], CultureInfo.InvariantCulture) : 0;
            uint rdev = 0;
            if (type is 'c' or 'b')
            {
                string[] majorMinor = TreeBuilder.Run("stat", "-c", "%t:%T", full).Trim().Split(':');
                rdev = TreeNative.MakeDev(uint.Parse(majorMinor[0], NumberStyles.HexNumber), uint.Parse(majorMinor[1], NumberStyles.HexNumber));
            }

            entries[path] = new TreeEntry(
                path,
                type,
                Convert.ToUInt32(fields[i + 2], 8),
                uint.Parse(fields[i + 3], CultureInfo.InvariantCulture),
                uint.Parse(fields[i + 4], CultureInfo.InvariantCulture),
                long.Parse(fields[i + 5], CultureInfo.InvariantCulture),
                uint.Parse(fields[i + 6], CultureInfo.InvariantCulture),
                ulong.Parse(fields[i + 7], CultureInfo.InvariantCulture),
                long.Parse(time[0], CultureInfo.InvariantCulture),
                nanoseconds,
                type == 'l' ? fields[i + 9] : null,
                rdev,
                ReadXattrs(full));
        }

        return entries;
    }

    private static SortedDictionary<string, byte[]> ReadXattrs(string path)
    {
        var result = new SortedDictionary<string, byte[]>(StringComparer.Ordinal);
        nint length = TreeNative.llistxattr(path, null, 0);
        if (length <= 0)
        {
            return result;
        }

        var list = new byte[length];
        length = TreeNative.llistxattr(path, list, (nuint)list.Length);
        foreach (string name in Encoding.UTF8.GetString(list, 0, (int)length).Split('\0', StringSplitOptions.RemoveEmptyEntries))
        {
            nint size = TreeNative.lgetxattr(path, name, null, 0);
            var value = new byte[Math.Max(size, 0)];
            if (size > 0)
            {
                TreeNative.lgetxattr(path, name, value, (nuint)value.Length);
            }

            result[name] = value;
        }

        return result;
    }
}
