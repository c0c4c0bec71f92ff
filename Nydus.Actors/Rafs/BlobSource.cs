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

    public BlobSource(IBlobBackend? backend, IReadOnlyList<string>? devicePaths = null)
    {
        Backend = backend;
        DevicePaths = devicePaths ?? Array.Empty<string>();
    }

    public IBlobBackend? Backend { get; }

    public IReadOnlyList<string> DevicePaths { get; }

    /// <summary>Blobs named by id in a directory, like upstream's localfs backend with <c>dir</c>.</summary>
    public static BlobSource FromDirectory(string dir) => new(LocalFsBackend.ForDirectory(dir));

    /// <summary>Extra EROFS devices as files (device 1 first).</summary>
    public static BlobSource FromDevices(params string[] devicePaths) => new(null, devicePaths);
}
