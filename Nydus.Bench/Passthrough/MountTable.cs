namespace Nydus.Bench.Passthrough;

/// <summary>Reads /proc/self/mounts, the one way to ask about a FUSE mount without risking a hang on a dead server.</summary>
public static class MountTable
{
    public static bool IsFuseMount(string mountPoint)
    {
        foreach (var line in File.ReadLines("/proc/self/mounts"))
        {
            // Fields: source target fstype options dump pass; spaces in paths are octal-escaped, our paths have none.
            var fields = line.Split(' ');
            if (fields.Length > 2 && fields[1] == mountPoint && fields[2].StartsWith("fuse", StringComparison.Ordinal))
                return true;
        }
        return false;
    }
}
