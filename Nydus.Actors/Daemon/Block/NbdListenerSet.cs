using System.Net;
using System.Net.Sockets;
using Nydus.Actors.Block.Nbd;

namespace Nydus.Actors.Daemon.Block;

/// <summary>
/// The block service's NBD listeners: one <see cref="NbdServer"/> with its own export table per address, so a client
/// sees only the exports of the address it connected to (a Unix socket's 0600 exports never show on a TCP port).
/// A server starts with the first export on its address and stops with the last. Not thread-safe: the block
/// service runs one change at a time.
/// </summary>
public sealed class NbdListenerSet : IDisposable
{
    private readonly Dictionary<string, NbdServer> _servers = new(StringComparer.Ordinal);
    private readonly NbdServerOptions _options;

    public NbdListenerSet(NbdServerOptions? options = null) => _options = options ?? new NbdServerOptions();

    /// <summary>The addresses listened on now.</summary>
    public IReadOnlyCollection<string> Addresses => _servers.Keys;

    /// <summary>
    /// Adds <paramref name="export"/> to the server of <paramref name="address"/>, starting it if needed, and returns
    /// the address as bound (a TCP port 0 becomes the port picked). On failure the export is not taken.
    /// Errors: <see cref="BlockServiceException"/> (AlreadyExists for an address another process uses or a path that
    /// is not a socket, Invalid for one that cannot be bound at all).
    /// </summary>
    public string Attach(string address, NbdExport export)
    {
        string key = Normalize(address);
        if (!_servers.TryGetValue(key, out NbdServer? server))
        {
            server = Listen(key, out key);
            _servers[key] = server;
        }

        if (!server.Exports.TryAdd(export))
            throw new BlockServiceException(BlockErrorKind.AlreadyExists, $"an export named '{export.Name}' is already served on {key}");
        return key;
    }

    /// <summary>Removes the export named <paramref name="name"/> from <paramref name="address"/> (its device is closed
    /// after the last connection reading it) and stops that listener when it serves nothing else.</summary>
    public void Detach(string address, string name)
    {
        if (!_servers.TryGetValue(address, out NbdServer? server)) return;
        server.Exports.Remove(name);
        if (server.Exports.All.Count > 0) return;
        _servers.Remove(address);
        server.Dispose();
        server.Exports.Dispose();
    }

    private static string Normalize(string address) =>
        address.StartsWith('/') ? Path.GetFullPath(address) : IPEndPoint.Parse(address).ToString();

    private NbdServer Listen(string address, out string bound)
    {
        var server = new NbdServer(new NbdExportTable(), _options);
        try
        {
            if (address.StartsWith('/'))
            {
                server.ListenUnix(address);
                bound = address;
            }
            else
            {
                bound = server.ListenTcp(IPEndPoint.Parse(address)).ToString();
            }
            return server;
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.AddressAlreadyInUse)
        {
            server.Dispose();
            throw new BlockServiceException(BlockErrorKind.AlreadyExists, $"the NBD address {address} is in use by another process", e);
        }
        catch (SocketException e)
        {
            server.Dispose();
            throw new BlockServiceException(BlockErrorKind.Invalid, $"cannot listen on the NBD address {address}: {e.Message}", e);
        }
        catch (IOException e)
        {
            // NbdServer.ListenUnix: a live socket of another server, or a path that is not a socket (never removed).
            server.Dispose();
            throw new BlockServiceException(BlockErrorKind.AlreadyExists, e.Message, e);
        }
        catch (UnauthorizedAccessException e)
        {
            server.Dispose();
            throw new BlockServiceException(BlockErrorKind.Invalid, $"cannot listen on the NBD address {address}: {e.Message}", e);
        }
    }

    /// <summary>Stops every listener, ends every connection and closes every device.</summary>
    public void Dispose()
    {
        foreach (NbdServer server in _servers.Values)
        {
            server.Dispose();
            server.Exports.Dispose();
        }
        _servers.Clear();
    }
}
