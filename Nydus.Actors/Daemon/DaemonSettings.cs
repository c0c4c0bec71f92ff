using Akka.Actor;

namespace Nydus.Actors.Daemon;

public enum DaemonKind
{
    /// <summary>The default: one FUSE mount served by this process.</summary>
    Fuse,
    /// <summary>No filesystem service; hosts the blob cache manager (upstream's <c>nydusd singleton</c>).</summary>
    Singleton,
    /// <summary>The VFS served to a VM over a vhost-user-fs socket (<c>nydusd virtiofs</c>).</summary>
    VirtioFs,
}

/// <summary>What a daemon actor is started with. Built by the host from the command line and HOCON.</summary>
/// <param name="Id">The <c>--id</c>, null when not given (the API then reports null, as upstream does).</param>
/// <param name="Supervisor">The <c>--supervisor</c> socket path, if any.</param>
/// <param name="WorkDir">Where this daemon's durable state lives (its SQLite files).</param>
/// <param name="ServiceProps">The child that performs service actions (FUSE session); null when there is none,
/// in which case every action succeeds at once.</param>
/// <param name="ActionTimeout">How long an action may take before the input is answered with an error.</param>
public sealed record DaemonSettings(
    string? Id,
    string? Supervisor,
    DaemonKind Kind,
    string WorkDir,
    Props? ServiceProps,
    TimeSpan ActionTimeout)
{
    /// <summary>Where the daemon leaves why it stopped, for the process's exit code.</summary>
    public DaemonOutcome Outcome { get; init; } = new();

    /// <summary>The VFS at the root of this daemon's FUSE mount, where the filesystem service attaches instances;
    /// null for a daemon without one (singleton).</summary>
    public Vfs.VirtualFileSystem? Vfs { get; init; }

    /// <summary>A successor waiting for a takeover: its journal records this start (and the mount table changes made
    /// meanwhile) only once it runs, because until then its predecessor (same id and work dir) may still write the
    /// same journal.</summary>
    public bool DeferStartRecord { get; init; }

    /// <summary>The state and instances the API reports, written by the daemon actor and its filesystem service; the
    /// host makes it (with the same id and supervisor) and hands the API the same one.</summary>
    public DaemonReadModel ReadModel { get; init; } = new(Id, Supervisor);

    /// <summary>The daemon's table of mounted instances (and its error log), shared with the API by the host.</summary>
    public Mounts.MountMetricsRegistry Metrics { get; init; } = new();

    /// <summary>The daemon's local blob caches: built by the host (which opens the command line's image through it
    /// before the daemon exists), handed to everything that opens a cache, disposed by the blob-cache actor.</summary>
    public Storage.Cache.BlobCacheRegistry Caches { get; init; } = new();

    /// <summary>Disk budget of the blob caches (HOCON <c>nydus.blob-cache</c>).</summary>
    public Storage.Cache.BlobCacheLimits CacheLimits { get; init; } = Storage.Cache.BlobCacheLimits.Unlimited;

    /// <summary>Reads a bootstrap's blob table for the blob cache manager (<c>/api/v2/blobs</c>); handed down by the
    /// host so that the storage layer never imports RAFS. Null: the daemon has no blob cache manager (501).</summary>
    public Storage.IBootstrapBlobTable? Bootstraps { get; init; }

    /// <summary>The persistence id of this daemon's journal. Without an <c>--id</c> the work dir is private to the
    /// process, so a fixed name cannot collide with another daemon.</summary>
    public string PersistenceId => "nydusd-" + (Id ?? "default");
}

/// <summary>Why a daemon ended, written by the daemon actor before it stops and read by the host afterwards.</summary>
public sealed class DaemonOutcome
{
    private volatile string? _failure;

    /// <summary>Null when the daemon stopped as asked (exit, signal); otherwise what made it stop.</summary>
    public string? Failure => _failure;

    public void Fail(string reason) => _failure ??= reason;

    /// <summary>Stopwatch timestamps of the way out, for the host's exit timing line (0 until reached): the daemon
    /// answered its last input in STOPPED, then its journal confirmed every write.</summary>
    public long StoppedAt { get; private set; }

    /// <inheritdoc cref="StoppedAt"/>
    public long JournalFlushedAt { get; private set; }

    private readonly TaskCompletionSource _leftToSuccessor = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>
    /// Completes when the daemon has left (<c>exit</c>) and its journal has confirmed every write: what it served is
    /// its successor's now (the FUSE connection, the journal) or never was its own (a successor that never took over),
    /// so nothing it still holds needs a graceful release and the process may end at once. Its actor tree is not
    /// stopped first: disposing sessions, instances and caches took tens of milliseconds more (hundreds under load),
    /// all of it in an upgrade's stall, for nothing the successor uses (it opened its own instances and cache maps).
    /// A stop (signal, which unmounts) still stops the tree and ends with the actor.
    /// </summary>
    public Task LeftToSuccessor => _leftToSuccessor.Task;

    public void MarkStopped() => StoppedAt = System.Diagnostics.Stopwatch.GetTimestamp();

    public void MarkLeftToSuccessor()
    {
        MarkJournalFlushed();
        _leftToSuccessor.TrySetResult();
    }

    public void MarkJournalFlushed() => JournalFlushedAt = System.Diagnostics.Stopwatch.GetTimestamp();
}
