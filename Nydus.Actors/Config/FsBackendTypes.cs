namespace Nydus.Actors.Config;

/// <summary>Spellings of <see cref="FsBackendType"/>: the case-sensitive input forms and the display form.</summary>
public static class FsBackendTypes
{
    /// <summary>
    /// <c>rafs</c> → Rafs; <c>passthrough</c>, <c>passthroughfs</c>, <c>passthrough_fs</c> → PassthroughFs; anything else,
    /// including <c>""</c> (what an API body without <c>fs_type</c> yields) and other cases, is rejected.
    /// </summary>
    public static FsBackendType Parse(string? text)
    {
        if (TryParse(text, out var type))
        {
            return type;
        }

        throw new ConfigException(
            ConfigErrorKind.InvalidFsType,
            $"fs_type: only 'rafs' and 'passthrough_fs' are supported, but '{text}' was specified");
    }

    public static bool TryParse(string? text, out FsBackendType type)
    {
        switch (text)
        {
            case "rafs":
                type = FsBackendType.Rafs;
                return true;
            case "passthrough":
            case "passthroughfs":
            case "passthrough_fs":
                type = FsBackendType.PassthroughFs;
                return true;
            default:
                type = default;
                return false;
        }
    }

    /// <summary>Upstream's Display/serde form, used in backend descriptors: <c>Rafs</c> or <c>PassthroughFs</c>.</summary>
    public static string ToDisplayString(this FsBackendType type) => type switch
    {
        FsBackendType.Rafs => "Rafs",
        FsBackendType.PassthroughFs => "PassthroughFs",
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, "not a filesystem backend type"),
    };

    /// <summary>Reads the display form back (persisted commands, descriptors).</summary>
    public static bool TryParseDisplayString(string? text, out FsBackendType type)
    {
        switch (text)
        {
            case "Rafs":
                type = FsBackendType.Rafs;
                return true;
            case "PassthroughFs":
                type = FsBackendType.PassthroughFs;
                return true;
            default:
                type = default;
                return false;
        }
    }
}
