using Nydus.Actors.Fuse.Ops;

namespace Nydus.Actors.Fuse.Session;

/// <summary>Settings of a <see cref="FuseSession"/>.</summary>
public sealed record FuseSessionOptions
{
    public const int MaxWorkers = 1024;

    /// <summary>Worker threads reading /dev/fuse (nydusd's --thread-num), 1 to 1024.</summary>
    public int WorkerCount { get; init; } = 1;

    /// <summary>What INIT asks for; also sizes the worker buffers (MaxWrite plus header room).</summary>
    public FuseInitOptions InitOptions { get; init; } = FuseInitOptions.ReadOnlyImage;

    /// <summary>Thread names are this prefix plus the worker index (visible in /proc/PID/task/*/comm, truncated to 15 chars).</summary>
    public string ThreadNamePrefix { get; init; } = "fuse-";
}
