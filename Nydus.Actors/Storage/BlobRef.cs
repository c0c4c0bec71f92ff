using Nydus.Actors.Storage.Backends;
using Nydus.Actors.Storage.Compression;
using Nydus.Actors.Storage.Digest;

namespace Nydus.Actors.Storage;

/// <summary>One data blob an image refers to: its id, where to read it, and how its chunks are encoded.</summary>
public sealed class BlobRef
{
    public BlobRef(string id, IBlobBackend backend, CompressionAlgorithm compression, DigestAlgorithm digest)
    {
        Id = id;
        Backend = backend;
        Compression = compression;
        Digest = digest;
    }

    public string Id { get; }

    public IBlobBackend Backend { get; }

    public CompressionAlgorithm Compression { get; }

    public DigestAlgorithm Digest { get; }

    public override string ToString() => Id;
}
