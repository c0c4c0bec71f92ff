using Nydus.Actors.Fuse.Abi;
using Nydus.Actors.Fuse.FileSystem;
using Nydus.Actors.Interop;

namespace Nydus.Actors.Tests.Support;

/// <summary>
/// Forwards the read-side operations to an inner file system and throws where a test asks it to: LOOKUP of
/// the name "boom" always, READ while <see cref="FailReads"/> is set. Proves a throwing file system costs
/// one request an EIO, not the worker.
/// </summary>
internal sealed class FuseFaultInjectingFileSystem : IFuseFileSystem, IDisposable
{
    private readonly IFuseFileSystem _inner;

    public FuseFaultInjectingFileSystem(IFuseFileSystem inner) => _inner = inner;

    public volatile bool FailReads;

    /// <summary>While set to an unset gate, READ waits for it (at most a minute) after signalling <see cref="ReadHeld"/>.</summary>
    public volatile ManualResetEventSlim? HoldReads;

    /// <summary>Set when a READ starts waiting on <see cref="HoldReads"/>.</summary>
    public readonly ManualResetEventSlim ReadHeld = new();

    public int Thrown;

    public bool SupportsReadDirPlus => _inner.SupportsReadDirPlus;

    public bool SupportsZeroMessageOpen => _inner.SupportsZeroMessageOpen;

    public Errno Lookup(in FuseContext context, ulong parent, ReadOnlySpan<byte> name, out FuseEntry entry)
    {
        if (name.SequenceEqual("boom"u8))
        {
            Interlocked.Increment(ref Thrown);
            throw new InvalidOperationException("injected lookup failure");
        }

        return _inner.Lookup(in context, parent, name, out entry);
    }

    public void Forget(ulong nodeId, ulong lookupCount) => _inner.Forget(nodeId, lookupCount);

    public Errno GetAttr(in FuseContext context, ulong nodeId, ulong? handle, out FuseAttr attr, out TimeSpan timeout) =>
        _inner.GetAttr(in context, nodeId, handle, out attr, out timeout);

    public Errno Open(in FuseContext context, ulong nodeId, int flags, out FuseOpenResult result) =>
        _inner.Open(in context, nodeId, flags, out result);

    public Errno Read(in FuseContext context, ulong nodeId, ulong handle, long offset, Span<byte> buffer, out int bytesRead)
    {
        if (FailReads)
        {
            Interlocked.Increment(ref Thrown);
            throw new IOException("injected read failure");
        }

        if (HoldReads is { } gate)
        {
            ReadHeld.Set();
            gate.Wait(TimeSpan.FromMinutes(1));
        }

        return _inner.Read(in context, nodeId, handle, offset, buffer, out bytesRead);
    }

    public Errno Release(in FuseContext context, ulong nodeId, ulong handle, int flags) => _inner.Release(in context, nodeId, handle, flags);

    public Errno Flush(in FuseContext context, ulong nodeId, ulong handle, ulong lockOwner) => _inner.Flush(in context, nodeId, handle, lockOwner);

    public Errno OpenDir(in FuseContext context, ulong nodeId, int flags, out FuseOpenResult result) =>
        _inner.OpenDir(in context, nodeId, flags, out result);

    public Errno ReadDir(in FuseContext context, ulong nodeId, ulong handle, long offset, ref FuseDirectoryWriter writer) =>
        _inner.ReadDir(in context, nodeId, handle, offset, ref writer);

    public Errno ReadDirPlus(in FuseContext context, ulong nodeId, ulong handle, long offset, ref FuseDirectoryWriter writer) =>
        _inner.ReadDirPlus(in context, nodeId, handle, offset, ref writer);

    public Errno ReleaseDir(in FuseContext context, ulong nodeId, ulong handle) => _inner.ReleaseDir(in context, nodeId, handle);

    public Errno ReadLink(in FuseContext context, ulong nodeId, Span<byte> target, out int length) =>
        _inner.ReadLink(in context, nodeId, target, out length);

    public Errno GetXattr(in FuseContext context, ulong nodeId, ReadOnlySpan<byte> name, Span<byte> value, out int size) =>
        _inner.GetXattr(in context, nodeId, name, value, out size);

    public Errno ListXattr(in FuseContext context, ulong nodeId, Span<byte> list, out int size) =>
        _inner.ListXattr(in context, nodeId, list, out size);

    public void Dispose() => (_inner as IDisposable)?.Dispose();
}
