namespace Nydus.Actors.Fuse.Session;

/// <summary>How <see cref="FuseMount.Mount"/> mounts a FUSE file system.</summary>
public sealed record FuseMountOptions
{
    /// <summary>Source shown in /proc/mounts (upstream nydusd uses "rafs").</summary>
    public string Source { get; init; } = "rafs";

    /// <summary>Optional subtype: the mount appears as fuse.&lt;subtype&gt;.</summary>
    public string? Subtype { get; init; }

    /// <summary>Mount with MS_RDONLY: the kernel itself refuses writes with EROFS.</summary>
    public bool ReadOnly { get; init; } = true;

    /// <summary>Let users other than the mounting one access the mount.</summary>
    public bool AllowOther { get; init; }

    /// <summary>Let the kernel check permissions from the file modes instead of asking the server.</summary>
    public bool DefaultPermissions { get; init; } = true;

    /// <summary>Largest READ request (max_read); match <see cref="Ops.FuseInitOptions.MaxWrite"/>.</summary>
    public uint MaxRead { get; init; } = 1024 * 1024;

    /// <summary>Owner of the connection (user_id=); null means the effective uid.</summary>
    public uint? UserId { get; init; }

    /// <summary>Group of the connection (group_id=); null means the effective gid.</summary>
    public uint? GroupId { get; init; }

    /// <summary>Mount through fusermount3 even as root (it is used anyway when not root).</summary>
    public bool ForceFusermount { get; init; }
}
