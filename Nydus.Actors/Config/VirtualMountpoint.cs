namespace Nydus.Actors.Config;

/// <summary>
/// Checks the path a filesystem is attached at inside the daemon's single FUSE tree (<c>-m/--virtual-mountpoint</c>,
/// the API's <c>mountpoint</c> query). The mount table is keyed by this exact text, so only the normalized spelling
/// is accepted: <c>/</c>, or <c>/a/b</c> with no empty, <c>.</c> or <c>..</c> components and no trailing slash.
/// </summary>
public static class VirtualMountpoint
{
    /// <summary>The root of the virtual tree, nydusd's default <c>--virtual-mountpoint</c>.</summary>
    public const string Root = "/";

    /// <summary>Longest path component a FUSE lookup can carry (NAME_MAX).</summary>
    public const int MaxComponentLength = 255;

    /// <summary>Returns <paramref name="mountpoint"/> when valid; otherwise throws <see cref="ConfigException"/> (InvalidMountpoint).</summary>
    public static string Validate(string? mountpoint)
    {
        if (string.IsNullOrEmpty(mountpoint))
        {
            Fail(mountpoint, "it is empty");
        }

        if (mountpoint[0] != '/')
        {
            Fail(mountpoint, "it is not absolute");
        }

        if (PathText.Problem(mountpoint) is { } problem)
        {
            Fail(mountpoint, problem);
        }

        if (mountpoint.Length == 1)
        {
            return mountpoint;
        }

        var rest = mountpoint.AsSpan(1);
        foreach (var range in rest.Split('/'))
        {
            var component = rest[range];
            if (component.IsEmpty)
            {
                Fail(mountpoint, "it has an empty component (double or trailing slash)");
            }

            if (component is "." or "..")
            {
                Fail(mountpoint, $"it has a '{component}' component");
            }

            if (System.Text.Encoding.UTF8.GetByteCount(component) > MaxComponentLength)
            {
                Fail(mountpoint, $"a component is longer than {MaxComponentLength} bytes");
            }
        }

        return mountpoint;
    }

    public static bool IsValid(string? mountpoint)
    {
        try
        {
            Validate(mountpoint);
            return true;
        }
        catch (ConfigException)
        {
            return false;
        }
    }

    [System.Diagnostics.CodeAnalysis.DoesNotReturn]
    private static void Fail(string? mountpoint, string reason) =>
        throw new ConfigException(ConfigErrorKind.InvalidMountpoint, $"mountpoint {PathText.Quote(mountpoint)} is not a valid virtual mountpoint: {reason}");
}
