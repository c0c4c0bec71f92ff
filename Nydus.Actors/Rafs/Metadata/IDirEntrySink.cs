namespace Nydus.Actors.Rafs.Metadata;

/// <summary>
/// Receives directory entries from <see cref="RafsImage.ReadDir{TSink}"/>. Implement it on a struct (or ref
/// struct) so the call is not boxed; a FUSE adapter packs the entries straight into its reply buffer.
/// </summary>
public interface IDirEntrySink
{
    /// <summary>
    /// Offers one entry; <paramref name="nextOffset"/> is the offset to pass to continue after it.
    /// Return false when full: iteration stops and the entry counts as not delivered.
    /// </summary>
    bool TryAdd(scoped ReadOnlySpan<byte> name, ulong ino, InodeType type, long nextOffset);
}
