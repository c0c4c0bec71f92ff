using Nydus.Actors.Rafs.Layout.V6;
using Nydus.Actors.Storage;

namespace Nydus.Actors.Rafs;

/// <summary>The blob cache manager's view of a bootstrap: its format and blob table, read without any backend.</summary>
public sealed class RafsBootstrapBlobTable : IBootstrapBlobTable
{
    public BootstrapBlobs Read(string bootstrapPath)
    {
        using var image = RafsImage.Open(bootstrapPath, BlobSource.None);
        // A plain EROFS image (mkfs.erofs, chunked with --blobdev) has no blob table: its devices are the table's
        // slots, named by their tags or, untagged, by the entry (the mount's device= option).
        if (image is ErofsImage { Format: RafsFormat.Erofs } erofs)
            return new BootstrapBlobs(false, [], erofs.DeviceTags());
        return new BootstrapBlobs(image.Format == RafsFormat.RafsV5, image.DataBlobIds);
    }
}
