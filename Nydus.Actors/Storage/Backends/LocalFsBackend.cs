using System.Collections.Concurrent;
using Microsoft.Win32.SafeHandles;

namespace Nydus.Actors.Storage.Backends;

/// <summary>
/// Upstream's <c>localfs</c> backend: blobs are plain files, read with positional reads (pread) so one open
/// handle per blob serves all worker threads at once.
/// </summary>
public sealed class LocalFsBackend : IBlobBackend, ILocalBlobFiles
{
    private readonly LocalFsBackendSettings _settings;
    private readonly ConcurrentDictionary<string, SafeFileHandle> _handles = new(StringComparer.Ordinal);
    private readonly object _openLock = new();
    private bool _disposed;

    public LocalFsBackend(LocalFsBackendSettings settings)
    {
        if (settings.Dir is null && settings.BlobFile is null)
        {
            throw new ArgumentException("localfs backend needs either dir or blob_file", nameof(settings));
        }

        // A mistyped path must stop the mount at start, naming the field, instead of turning every file read into EIO.
        if (settings.Dir is { } dir && !Directory.Exists(dir))
        {
            throw new StorageException(StorageErrorKind.BlobNotFound,
                $"localfs backend: blob directory {dir} (backend.localfs.dir) does not exist");
        }

        // Not a FIFO or a device either: a read of one would block a FUSE worker or never end.
        if (settings.BlobFile is { } file && Interop.InputFile.NotRegular(file, out _) is { } what)
        {
            throw new StorageException(StorageErrorKind.BlobNotFound,
                $"localfs backend: blob file {file} (backend.localfs.blob_file) {what}");
        }

        _settings = settings;
    }

    /// <summary>A backend that serves every blob id from one file (upstream's <c>blob_file</c>).</summary>
    public static LocalFsBackend ForFile(string path) => new(new LocalFsBackendSettings { BlobFile = path });

    /// <summary>A backend that serves blob files named by id from <paramref name="dir"/>.</summary>
    public static LocalFsBackend ForDirectory(string dir, params string[] altDirs) =>
        new(new LocalFsBackendSettings { Dir = dir, AltDirs = altDirs });

    public long GetBlobSize(string blobId) => RandomAccess.GetLength(GetHandle(blobId));

    public void Read(string blobId, long offset, Span<byte> destination)
    {
        SafeFileHandle handle = GetHandle(blobId);
        int done = 0;
        while (done < destination.Length)
        {
            int n;
            try
            {
                n = RandomAccess.Read(handle, destination.Slice(done), offset + done);
            }
            catch (IOException e)
            {
                throw new StorageException(StorageErrorKind.IoError,
                    $"read of blob {blobId} at offset {offset + done} failed: {e.Message}", e);
            }

            if (n == 0)
            {
                throw new StorageException(StorageErrorKind.BlobTooShort,
                    $"blob {blobId} ends at {offset + done}, before the requested range " +
                    $"[{offset}, {offset + destination.Length}) (file {DescribePath(blobId)})");
            }

            done += n;
        }
    }

    public bool TryGetBlobFile(string blobId, out SafeFileHandle file)
    {
        try
        {
            file = GetHandle(blobId);
            return true;
        }
        catch (Exception e) when (e is StorageException or ObjectDisposedException)
        {
            file = null!;
            return false;
        }
    }

    public void Dispose()
    {
        lock (_openLock)
        {
            _disposed = true;
            foreach (KeyValuePair<string, SafeFileHandle> entry in _handles)
            {
                entry.Value.Dispose();
            }

            _handles.Clear();
        }
    }

    private SafeFileHandle GetHandle(string blobId)
    {
        if (_handles.TryGetValue(blobId, out SafeFileHandle? handle))
        {
            return handle;
        }

        lock (_openLock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_handles.TryGetValue(blobId, out handle))
            {
                return handle;
            }

            string path = ResolvePath(blobId);
            if (Interop.InputFile.NotRegular(path, out _) is { } what && what != Interop.InputFile.DoesNotExist)
            {
                throw new StorageException(StorageErrorKind.IoError, $"cannot open blob {blobId}: {path} {what}");
            }

            try
            {
                handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new StorageException(StorageErrorKind.IoError, $"cannot open blob {blobId} at {path}: {e.Message}", e);
            }

            _handles[blobId] = handle;
            return handle;
        }
    }

    private string ResolvePath(string blobId)
    {
        if (_settings.BlobFile is not null)
        {
            return _settings.BlobFile;
        }

        // A blob id comes from an untrusted image: it must never escape the configured directories.
        if (blobId.Length == 0 || blobId.Contains('/') || blobId == "." || blobId == ".." || blobId.Contains('\0'))
        {
            throw new StorageException(StorageErrorKind.BlobNotFound, $"invalid blob id \"{blobId}\"");
        }

        string primary = Path.Combine(_settings.Dir!, blobId);
        if (IsNonEmptyFile(primary))
        {
            return primary;
        }

        foreach (string alt in _settings.AltDirs)
        {
            string candidate = Path.Combine(alt, blobId);
            if (IsNonEmptyFile(candidate))
            {
                return candidate;
            }
        }

        throw new StorageException(StorageErrorKind.BlobNotFound,
            $"blob {blobId} not found in {_settings.Dir}" +
            (_settings.AltDirs.Count > 0 ? $" or alt_dirs {string.Join(", ", _settings.AltDirs)}" : string.Empty));
    }

    private static bool IsNonEmptyFile(string path)
    {
        var info = new FileInfo(path);
        return info.Exists && info.Length > 0;
    }

    private string DescribePath(string blobId) => _settings.BlobFile ?? Path.Combine(_settings.Dir!, blobId);
}
