using Nydus.Actors.Storage;

namespace Nydus.Actors.Rafs;

/// <summary>The blob cache manager's view of a bootstrap: its format and blob table, read without any backend.</summary>
public sealed class RafsBootstrapBlobTable : IBootstrapBlobTable
{
    public BootstrapBlobs Read(string bootstrapPath)
    {
        using var image = RafsImage.Open(bootstrapPath, BlobSource.None);
        if (image.Format == RafsFormat.Erofs)
            throw new RafsException(RafsErrorKind.Unsupported, $"{bootstrapPath} is a plain EROFS image, not a RAFS bootstrap");
        return new BootstrapBlobs(image.Format == RafsFormat.RafsV5, image.DataBlobIds);
    }
}
