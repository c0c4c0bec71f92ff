namespace Nydus.Actors.Storage.Prefetch;

/// <summary>A background prefetch of a mounted image (whole blobs or listed files): its counters and its end.</summary>
public interface IPrefetcher : IDisposable
{
    /// <summary>Completes when every worker has stopped (done or cancelled); never faults.</summary>
    Task Completion { get; }

    PrefetchProgress Progress { get; }

    /// <summary>Worker threads it runs on (upstream's <c>prefetch_workers</c>).</summary>
    int Threads { get; }
}
