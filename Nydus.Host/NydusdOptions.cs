namespace Nydus.Host;

/// <summary>The daemon's command line after parsing and validation.</summary>
public sealed record NydusdOptions
{
    public required bool Singleton { get; init; }
    public string? ApiSock { get; init; }
    public string? Config { get; init; }
    public string? Id { get; init; }
    public string? Supervisor { get; init; }
    public bool Upgrade { get; init; }
    public required string LogLevel { get; init; }
    public string? LogFile { get; init; }
    /// <summary>Roll the log file at this many MiB (0: never).</summary>
    public int LogRotationSize { get; init; }
    public string? WorkDir { get; init; }
    public string? HoconFile { get; init; }
    /// <summary>--journal-repair: move the work dir's journal files aside (quarantine) and start on a fresh one.</summary>
    public bool JournalRepair { get; init; }
    public ulong RlimitNofile { get; init; } = 1_000_000;

    // FUSE mode
    public string? Mountpoint { get; init; }
    public string FailoverPolicy { get; init; } = "resend";
    public int ThreadNum { get; init; } = 4;
    public bool Writable { get; init; }
    public string? Bootstrap { get; init; }
    public string? LocalfsDir { get; init; }
    public string? SharedDir { get; init; }
    public string? PrefetchFiles { get; init; }
    public string VirtualMountpoint { get; init; } = "/";

    // virtio-fs (nydusd virtiofs): the FUSE mode's source flags above, served over vhost-user-fs instead of a mount;
    // ThreadNum is the number of request queues offered.
    /// <summary>--sock: the vhost-user-fs socket; non-null makes this a virtio-fs daemon (no --mountpoint).</summary>
    public string? VirtioFsSocket { get; init; }

    // Singleton: EROFS over fscache (cachefiles on-demand)
    /// <summary>--fscache: the cachefiles cache directory; null: no fscache service.</summary>
    public string? Fscache { get; init; }
    public string? FscacheTag { get; init; }
    public int FscacheThreads { get; init; } = 4;
}
