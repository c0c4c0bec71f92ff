using System.Collections.Concurrent;

namespace Nydus.Actors.Block.Nbd;

/// <summary>
/// One named, read-only export: a <see cref="BlockAddressSpace"/> that clients read. Connections lease it, so a
/// removed export's device is disposed when the last connection reading it ends, never under a reader.
/// </summary>
public sealed class NbdExport
{
    private readonly object _gate = new();
    private int _leases;
    private bool _removed;

    public NbdExport(string name, string description, BlockAddressSpace device)
    {
        Name = name;
        Description = description;
        Device = device;
    }

    public string Name { get; }

    public string Description { get; }

    public BlockAddressSpace Device { get; }

    /// <summary>Connections in transmission on this export now.</summary>
    public int Connections => Volatile.Read(ref _leases);

    internal bool TryLease()
    {
        lock (_gate)
        {
            if (_removed) return false;
            _leases++;
            return true;
        }
    }

    internal void Release()
    {
        bool dispose;
        lock (_gate)
        {
            _leases--;
            dispose = _removed && _leases == 0;
        }

        if (dispose) Device.Dispose();
    }

    internal void MarkRemoved()
    {
        bool dispose;
        lock (_gate)
        {
            if (_removed) return;
            _removed = true;
            dispose = _leases == 0;
        }

        if (dispose) Device.Dispose();
    }
}

/// <summary>
/// The exports an <see cref="NbdServer"/> serves, by name. The empty name asks for the default export: the only
/// one, or the one named "default". Thread-safe.
/// </summary>
public sealed class NbdExportTable : IDisposable
{
    private readonly ConcurrentDictionary<string, NbdExport> _exports = new(StringComparer.Ordinal);

    public IReadOnlyCollection<NbdExport> All => _exports.Values.OrderBy(e => e.Name, StringComparer.Ordinal).ToArray();

    /// <summary>Adds an export; false (and the device is not taken) when the name is in use.</summary>
    public bool TryAdd(NbdExport export) => _exports.TryAdd(export.Name, export);

    /// <summary>Removes an export; its device is disposed once no connection reads it.</summary>
    public bool Remove(string name)
    {
        if (!_exports.TryRemove(name, out NbdExport? export)) return false;
        export.MarkRemoved();
        return true;
    }

    public NbdExport? Find(string name)
    {
        if (_exports.TryGetValue(name, out NbdExport? export)) return export;
        if (name.Length != 0) return null;
        if (_exports.TryGetValue("default", out export)) return export;
        NbdExport[] all = _exports.Values.ToArray();
        return all.Length == 1 ? all[0] : null;
    }

    public void Dispose()
    {
        foreach (string name in _exports.Keys.ToArray()) Remove(name);
    }
}
