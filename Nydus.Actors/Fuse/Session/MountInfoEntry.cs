using System.Text;

namespace Nydus.Actors.Fuse.Session;

/// <summary>
/// One line of /proc/self/mountinfo, reduced to what the FUSE layer needs. Reading this file is how the
/// layer learns about a mount without ever touching the mountpoint: stat() of a FUSE mount whose server is
/// gone hangs.
/// </summary>
/// <param name="MountPoint">Mountpoint with the kernel's octal escapes (\040 for space) decoded.</param>
/// <param name="Major">Device major (0 for FUSE).</param>
/// <param name="Minor">Device minor: for FUSE the connection id under /sys/fs/fuse/connections.</param>
/// <param name="FileSystemType">"fuse", "fuse.subtype", "fuseblk", ...</param>
/// <param name="Source">Mount source ("rafs").</param>
public sealed record MountInfoEntry(string MountPoint, uint Major, uint Minor, string FileSystemType, string Source)
{
    public bool IsFuse => FileSystemType == "fuse" || FileSystemType.StartsWith("fuse.", StringComparison.Ordinal) || FileSystemType == "fuseblk";

    /// <summary>Parses one mountinfo line; null when the line is malformed.</summary>
    public static MountInfoEntry? Parse(string line)
    {
        // "36 35 0:45 / /mnt/point rw,relatime shared:1 - fuse rafs rw,user_id=0,..."
        string[] fields = line.Split(' ');
        int separator = Array.IndexOf(fields, "-");
        if (fields.Length < 10 || separator < 6 || separator + 2 >= fields.Length)
        {
            return null;
        }

        string[] device = fields[2].Split(':');
        if (device.Length != 2 || !uint.TryParse(device[0], out uint major) || !uint.TryParse(device[1], out uint minor))
        {
            return null;
        }

        return new MountInfoEntry(Unescape(fields[4]), major, minor, fields[separator + 1], Unescape(fields[separator + 2]));
    }

    /// <summary>Reads the table of the calling process.</summary>
    public static IReadOnlyList<MountInfoEntry> ReadAll(string path = "/proc/self/mountinfo")
    {
        var entries = new List<MountInfoEntry>();
        foreach (string line in File.ReadLines(path))
        {
            if (Parse(line) is { } entry)
            {
                entries.Add(entry);
            }
        }

        return entries;
    }

    /// <summary>The topmost mount at <paramref name="mountPoint"/>, or null.</summary>
    public static MountInfoEntry? Find(string mountPoint, string path = "/proc/self/mountinfo")
    {
        string wanted = Normalize(mountPoint);
        MountInfoEntry? found = null;
        foreach (MountInfoEntry entry in ReadAll(path))
        {
            // Later lines are mounted on top of earlier ones at the same place.
            if (entry.MountPoint == wanted)
            {
                found = entry;
            }
        }

        return found;
    }

    internal static string Normalize(string mountPoint)
    {
        string full = Path.GetFullPath(mountPoint);
        return full.Length > 1 ? full.TrimEnd('/') : full;
    }

    private static string Unescape(string field)
    {
        if (!field.Contains('\\'))
        {
            return field;
        }

        var bytes = new List<byte>(field.Length);
        for (int i = 0; i < field.Length; i++)
        {
            if (field[i] == '\\' && IsOctal(field, i + 1))
            {
                bytes.Add((byte)Convert.ToInt32(field.Substring(i + 1, 3), 8));
                i += 3;
            }
            else
            {
                bytes.AddRange(Encoding.UTF8.GetBytes(field[i].ToString()));
            }
        }

        return Encoding.UTF8.GetString(bytes.ToArray());
    }

    private static bool IsOctal(string text, int start)
    {
        if (start + 3 > text.Length)
        {
            return false;
        }

        for (int i = start; i < start + 3; i++)
        {
            if (text[i] < '0' || text[i] > '7')
            {
                return false;
            }
        }

        return true;
    }
}
