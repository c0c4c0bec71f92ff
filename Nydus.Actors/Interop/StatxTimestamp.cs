using System.Runtime.InteropServices;

namespace Nydus.Actors.Interop;

/// <summary>struct statx_timestamp: seconds and nanoseconds since the epoch.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct StatxTimestamp
{
    public long Seconds;
    public uint Nanoseconds;
    private readonly int _reserved;
}
