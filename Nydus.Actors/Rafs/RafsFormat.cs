namespace Nydus.Actors.Rafs;

/// <summary>The on-disk format <see cref="RafsImage.Open"/> detected.</summary>
public enum RafsFormat
{
    RafsV5,
    RafsV6,

    /// <summary>A plain EROFS image such as mkfs.erofs makes (data inside the image or on extra devices).</summary>
    Erofs,
}
