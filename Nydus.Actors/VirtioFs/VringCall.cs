using Microsoft.Win32.SafeHandles;
using Nydus.Actors.Interop;

namespace Nydus.Actors.VirtioFs;

/// <summary>
/// A queue's call eventfd (the guest interrupt). The frontend replaces it while the queue runs (qemu swaps it when it
/// masks or unmasks the vector), so the worker signals through this holder and never sees a closed descriptor.
/// </summary>
public sealed class VringCall : IDisposable
{
    private readonly object _gate = new();
    private SafeFileHandle? _fd;

    public void Replace(SafeFileHandle? fd)
    {
        lock (_gate)
        {
            _fd?.Dispose();
            _fd = fd;
        }
    }

    public void Signal()
    {
        lock (_gate)
        {
            if (_fd is { IsClosed: false } fd) Libc.SignalEvent(fd);
        }
    }

    public void Dispose() => Replace(null);
}
