namespace Nydus.Actors.Fuse;

/// <summary>What went wrong in the FUSE layer; supervisors decide on the kind.</summary>
public enum FuseErrorKind
{
    /// <summary>Opening /dev/fuse or mount(2)/fusermount3 failed. Not retryable without a config change.</summary>
    MountFailed,

    /// <summary>umount2(2) or fusermount3 -u failed.</summary>
    UnmountFailed,

    /// <summary>The mountpoint has no FUSE mount in /proc/self/mountinfo.</summary>
    NotMounted,

    /// <summary>Writing the connection's abort file failed.</summary>
    AbortFailed,

    /// <summary>A worker thread died outside request handling. Supervision: restart the workers on the same fd.</summary>
    WorkerFaulted,
}
