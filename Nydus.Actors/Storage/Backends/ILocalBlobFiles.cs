using Microsoft.Win32.SafeHandles;

namespace Nydus.Actors.Storage.Backends;

/// <summary>
/// A backend whose blobs are local files, read as they are: a reader that can move file pages itself (the NBD
/// server's splice of a device range straight to the socket) may take the open file instead of calling
/// <see cref="IBlobBackend.Read(string, long, Span{byte})"/>. The handle stays owned by the backend.
/// </summary>
public interface ILocalBlobFiles
{
    /// <summary>The open file of <paramref name="blobId"/>, or false when it cannot be opened (Read says why).</summary>
    bool TryGetBlobFile(string blobId, out SafeFileHandle file);
}
