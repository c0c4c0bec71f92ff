namespace Nydus.Actors.Storage;

/// <summary>Stored bytes [Offset, Offset+Length) of a blob: what one chunk of a file occupies, for prefetching.</summary>
public readonly record struct BlobRange(BlobRef Blob, long Offset, int Length)
{
    public long End => Offset + Length;
}
