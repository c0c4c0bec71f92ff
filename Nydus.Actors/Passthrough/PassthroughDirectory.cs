using Microsoft.Win32.SafeHandles;

namespace Nydus.Actors.Passthrough;

/// <summary>
/// An open directory: a readable descriptor plus the getdents64 records read but not yet listed, so a
/// READDIR that stopped because the reply was full continues without seeking.
/// </summary>
internal sealed class PassthroughDirectory : IDisposable
{
    public const int BufferSize = 32 * 1024;

    public PassthroughDirectory(SafeFileHandle handle) => Handle = handle;

    public SafeFileHandle Handle { get; }

    public object Gate { get; } = new();

    /// <summary>Raw linux_dirent64 records; [Start, End) is still unlisted.</summary>
    public byte[] Buffer { get; } = new byte[BufferSize];

    public int Start { get; set; }

    public int End { get; set; }

    /// <summary>The offset cookie of the next record to list (what the kernel passes to continue here).</summary>
    public long Offset { get; set; }

    public void Dispose() => Handle.Dispose();
}
