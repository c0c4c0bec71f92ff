using System.Collections.Concurrent;
using Microsoft.Win32.SafeHandles;
using Nydus.Actors.Fuse.Abi;
using Nydus.Actors.Fuse.FileSystem;
using Nydus.Actors.Fuse.Session;
using Nydus.Actors.Interop;
using Serilog;

namespace Nydus.Actors.Passthrough;

// Kernel passthrough (FUSE_PASSTHROUGH, Linux 6.9+): an opened regular file is registered with the kernel as the
// backing file of its node, and its reads and writes (and mmap) then never reach this server.
public sealed partial class PassthroughFileSystem
{
    private static readonly ILogger BackingLog = Serilog.Log.ForContext<PassthroughFileSystem>();

    private readonly object _backingGate = new();

    /// <summary>
    /// One backing id per node, shared by all its passthrough opens: the kernel refuses a second, different backing
    /// file for a node that has one in use (EBUSY on open). Closed when the last open naming it is released.
    /// </summary>
    private readonly Dictionary<ulong, (int Id, int Opens)> _backingIds = new();

    /// <summary>Open handles answered with FOPEN_PASSTHROUGH, and their node.</summary>
    private readonly ConcurrentDictionary<ulong, ulong> _backedHandles = new();

    private volatile FuseBackingFiles? _backingFiles;
    private long _readRequests;
    private long _writeRequests;
    private long _backedOpens;

    /// <summary>Whether open files are to be backed by the kernel when the connection allows (the config's choice).</summary>
    public bool KernelPassthrough { get; }

    /// <summary>Whether INIT granted passthrough and this instance uses it.</summary>
    public bool KernelPassthroughActive => _backingFiles is not null;

    /// <summary>READ requests this server answered (a passthrough-backed file causes none).</summary>
    public long ReadRequests => Interlocked.Read(ref _readRequests);

    /// <summary>WRITE requests this server answered.</summary>
    public long WriteRequests => Interlocked.Read(ref _writeRequests);

    /// <summary>Opens answered with a backing id.</summary>
    public long BackedOpens => Interlocked.Read(ref _backedOpens);

    /// <summary>Backing ids registered with the kernel now.</summary>
    public int BackingIds
    {
        get
        {
            lock (_backingGate) return _backingIds.Count;
        }
    }

    private void InitBacking(FuseConnectionInfo connection) =>
        _backingFiles = KernelPassthrough && (connection.Flags & FuseInitFlags.Passthrough) != 0 ? connection.BackingFiles : null;

    /// <summary>
    /// Names the node's backing file in an OPEN or CREATE reply, registering <paramref name="file"/> for it first if
    /// the node has none. When the kernel refuses (not CAP_SYS_ADMIN, a stacked host file system, a file without
    /// read_iter/write_iter) the open goes on without it: READ and WRITE come here as before.
    /// </summary>
    private void AttachBacking(PassthroughInode inode, SafeFileHandle file, ref FuseOpenResult result)
    {
        if (_backingFiles is not { } backing || (inode.FileType & FileModes.S_IFMT) != FileModes.S_IFREG)
        {
            return;
        }

        lock (_backingGate)
        {
            if (!_backingIds.TryGetValue(inode.NodeId, out var registered))
            {
                Errno errno = backing.Open(file, out int id);
                if (errno != Errno.Success)
                {
                    if (errno == Errno.EPERM)
                    {
                        // Missing CAP_SYS_ADMIN does not pass: stop asking for this connection.
                        _backingFiles = null;
                    }

                    BackingLog.Information("Kernel passthrough refused for {Root} node {NodeId} ({Errno}); served through FUSE", Root, inode.NodeId, errno);
                    return;
                }

                registered = (id, 0);
            }

            _backingIds[inode.NodeId] = (registered.Id, registered.Opens + 1);
            _backedHandles[result.Handle] = inode.NodeId;
            result.Flags |= FuseOpenFlags.Passthrough;
            result.BackingId = registered.Id;
        }

        Interlocked.Increment(ref _backedOpens);
    }

    /// <summary>At RELEASE: the last open of a node lets its backing id go.</summary>
    private void DetachBacking(ulong handle)
    {
        if (!_backedHandles.TryRemove(handle, out ulong nodeId))
        {
            return;
        }

        lock (_backingGate)
        {
            if (!_backingIds.TryGetValue(nodeId, out var registered))
            {
                return;
            }

            if (registered.Opens > 1)
            {
                _backingIds[nodeId] = (registered.Id, registered.Opens - 1);
                return;
            }

            _backingIds.Remove(nodeId);
            _ = _backingFiles?.Close(registered.Id);
        }
    }

    /// <summary>At DESTROY the connection and its backing ids are gone.</summary>
    private void ForgetBacking()
    {
        lock (_backingGate)
        {
            _backingIds.Clear();
            _backedHandles.Clear();
        }
    }
}
