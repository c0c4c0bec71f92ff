namespace Nydus.Actors.Storage.Prefetch;

/// <summary>
/// One blob for <see cref="BlobPrefetcher"/> to bring into the cache. A negative <paramref name="Size"/> means
/// "unknown": the prefetcher asks the cache for it on its own threads, so the mount never waits for that request.
/// </summary>
public readonly record struct PrefetchBlob(string BlobId, long Size = -1);
