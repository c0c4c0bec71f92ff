namespace Nydus.Actors.VirtioFs;

/// <summary>What the virtio-fs transport saw, for logs and tests: requests served, chains refused, queues stopped.</summary>
public sealed class VirtioFsCounters
{
    private long _requests;
    private long _badChains;
    private long _brokenQueues;

    public long Requests => Interlocked.Read(ref _requests);

    public long BadChains => Interlocked.Read(ref _badChains);

    public long BrokenQueues => Interlocked.Read(ref _brokenQueues);

    internal void Request() => Interlocked.Increment(ref _requests);

    internal void BadChain() => Interlocked.Increment(ref _badChains);

    internal void BrokenQueue() => Interlocked.Increment(ref _brokenQueues);
}
