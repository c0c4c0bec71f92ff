namespace Nydus.Actors.Storage;

/// <summary>
/// Reads the blob table of a bootstrap, for the manager (implemented by the RAFS layer and handed down by the host,
/// so that storage never imports RAFS).
/// </summary>
public interface IBootstrapBlobTable
{
    /// <summary>The bootstrap's format and data blob ids; throws with a message naming the file when it cannot be read.</summary>
    BootstrapBlobs Read(string bootstrapPath);
}

/// <param name="IsRafsV5">Upstream's manager refuses RAFS v5 (its consumers, fscache and the block device, need v6).</param>
/// <param name="DataBlobIds">A RAFS bootstrap's blob table.</param>
/// <param name="PlainDeviceTags">A plain EROFS image's device table tags in slot order ("" for an untagged slot, as
/// <c>mkfs.erofs --blobdev</c> writes); null for a RAFS bootstrap.</param>
public sealed record BootstrapBlobs(bool IsRafsV5, IReadOnlyList<string> DataBlobIds, IReadOnlyList<string>? PlainDeviceTags = null);
