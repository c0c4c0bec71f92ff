using Microsoft.Win32.SafeHandles;
using Nydus.Actors.Fuse.Abi;

namespace Nydus.Actors.Passthrough;

/// <summary>
/// Node ids to host inodes and back. Inodes are keyed by (st_dev, st_ino), so every name of a hard-linked
/// file resolves to one node. Node ids are handed out once and never reused, so the generation is always 0.
/// </summary>
internal sealed class PassthroughInodeTable : IDisposable
{
    private readonly object _gate = new();
    private readonly Dictionary<ulong, PassthroughInode> _byNodeId = [];
    private readonly Dictionary<(ulong Device, ulong Inode), PassthroughInode> _byHostKey = [];
    private ulong _nextNodeId = FuseProtocol.RootId + 1;

    public PassthroughInodeTable(SafeFileHandle rootHandle, ulong device, ulong inode)
    {
        // The root holds one reference nobody forgets.
        Root = new PassthroughInode(FuseProtocol.RootId, rootHandle, device, inode, Interop.FileModes.S_IFDIR) { LookupCount = 1 };
        _byNodeId.Add(Root.NodeId, Root);
        _byHostKey.Add((device, inode), Root);
    }

    public PassthroughInode Root { get; }

    public int Count
    {
        get
        {
            lock (_gate)
            {
                return _byNodeId.Count;
            }
        }
    }

    public bool TryGet(ulong nodeId, out PassthroughInode inode)
    {
        lock (_gate)
        {
            return _byNodeId.TryGetValue(nodeId, out inode!);
        }
    }

    /// <summary>
    /// Takes one lookup reference on the inode (device, inode), registering it with
    /// <paramref name="pathHandle"/> if unknown. When it was known the new handle is closed.
    /// </summary>
    public PassthroughInode Reference(SafeFileHandle pathHandle, ulong device, ulong inode, uint fileType)
    {
        lock (_gate)
        {
            if (_byHostKey.TryGetValue((device, inode), out PassthroughInode? known))
            {
                known.LookupCount++;
                pathHandle.Dispose();
                return known;
            }

            var created = new PassthroughInode(_nextNodeId++, pathHandle, device, inode, fileType) { LookupCount = 1 };
            _byNodeId.Add(created.NodeId, created);
            _byHostKey.Add((device, inode), created);
            return created;
        }
    }

    /// <summary>Drops <paramref name="count"/> references; at zero the node is removed and its handle closed.</summary>
    public void Forget(ulong nodeId, ulong count)
    {
        PassthroughInode? removed = null;
        lock (_gate)
        {
            if (nodeId == FuseProtocol.RootId || !_byNodeId.TryGetValue(nodeId, out PassthroughInode? inode))
            {
                return;
            }

            inode.LookupCount = count >= inode.LookupCount ? 0 : inode.LookupCount - count;
            if (inode.LookupCount == 0)
            {
                _byNodeId.Remove(nodeId);
                _byHostKey.Remove((inode.Device, inode.Inode));
                removed = inode;
            }
        }

        removed?.PathHandle.Dispose();
    }

    public void Dispose()
    {
        lock (_gate)
        {
            foreach (PassthroughInode inode in _byNodeId.Values)
            {
                inode.PathHandle.Dispose();
            }

            _byNodeId.Clear();
            _byHostKey.Clear();
        }
    }
}
