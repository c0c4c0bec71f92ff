using Akka.Actor;

namespace Nydus.Actors.Storage.Cache;

/// <summary>
/// Owns the lifetime of the local blob cache: cache files, limits and eviction. Reads never pass through it; the
/// data path reads cache files directly and this actor only hears of control events.
/// </summary>
public sealed class BlobCacheActor : ReceiveActor
{
}
