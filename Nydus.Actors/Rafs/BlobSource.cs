using Nydus.Actors.Storage.Backends;

namespace Nydus.Actors.Rafs;

/// <summary>
/// Where an image's data lives: a blob backend for blobs named by id (RAFS), and/or files for the extra
/// devices of a plain EROFS image (<c>mkfs.erofs --blobdev</c>), in device-table order. The image does not
/// take ownership; dispose the backend after the image.
/// </summary>
public sealed class BlobSource
{
    public static readonly BlobSource None = new(null, Array.Empty<string>());

    public BlobSource(IBlobBackend? backend, IReadOnlyList<string>? devicePaths = null, IReadOnlyList<string>? deviceBlobIds = null)
    {
        Backend = backend;
        DevicePaths = devicePaths ?? Array.Empty<string>();
        DeviceBlobIds = deviceBlobIds ?? Array.Empty<string>();
    }

    public IBlobBackend? Backend { get; }

    public IReadOnlyList<string> DevicePaths { get; }

    /// <summary>
    /// Blob ids for the untagged device slots of a plain EROFS image (<c>mkfs.erofs --blobdev</c>), in table order,
    /// read through <see cref="Backend"/>: what the kernel names with a mount's <c>device=</c> option and the blob
    /// cache manager's entry names with <c>devices</c>. A slot with a device file in <see cref="DevicePaths"/> uses the file.
    /// </summary>
    public IReadOnlyList<string> DeviceBlobIds { get; }

    /// <summary>Blobs named by id in a directory, like upstream's localfs backend with <c>dir</c>.</summary>
    public static BlobSource FromDirectory(string dir) => new(LocalFsBackend.ForDirectory(dir));

    /// <summary>Extra EROFS devices as files (device 1 first).</summary>
    public static BlobSource FromDevices(params string[] devicePaths) => new(null, devicePaths);
}
