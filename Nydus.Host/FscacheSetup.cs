using Akka.Actor;
using Nydus.Actors.Fscache;

namespace Nydus.Host;

/// <summary>
/// <c>nydusd singleton --fscache DIR [--fscache-tag T] [--fscache-threads N]</c>: opens and binds the cachefiles
/// device, or, when the test hook <c>NYDUS_TEST_CACHEFILES_SOCKET</c> names a socket, connects to a simulated kernel
/// there instead (<see cref="SimulatedCachefilesDevice"/>; this machine's kernel has no cachefiles module). A
/// successor (<c>--upgrade</c>) opens nothing: it takes the predecessor's descriptor from the supervisor.
/// </summary>
public static class FscacheSetup
{
    public static ICachefilesDevice OpenDevice(NydusdOptions options, string cacheDir)
    {
        string dir = Path.GetFullPath(cacheDir);
        Directory.CreateDirectory(dir);
        if (Environment.GetEnvironmentVariable(SimulatedCachefilesDevice.SocketVariable) is { Length: > 0 } socket)
        {
            Serilog.Log.Warning("fscache: using the simulated cachefiles device at {Socket} ({Variable} is a test hook)",
                socket, SimulatedCachefilesDevice.SocketVariable);
            try
            {
                return SimulatedCachefilesDevice.ConnectAndBind(socket, dir, options.FscacheTag);
            }
            catch (System.Net.Sockets.SocketException e)
            {
                throw new IOException($"cannot connect to the simulated cachefiles device {socket}: {e.Message}", e);
            }
        }

        return CachefilesDevice.OpenAndBind(dir, options.FscacheTag);
    }

    /// <summary>The service child: on the bound device, or, for a successor (<paramref name="takeover"/>), waiting for
    /// the predecessor's; null for a singleton without --fscache.</summary>
    public static Props? ServiceProps(ICachefilesDevice? device, NydusdOptions options, TimeSpan askTimeout, TimeSpan transferTimeout, bool takeover,
        FscacheMetrics? metrics, Nydus.Actors.Storage.Cache.BlobCacheRegistry caches)
    {
        if (options.Fscache is not { } cacheDir) return null;
        var handoff = new FscacheHandoffSettings(options.Supervisor, transferTimeout, options.Id ?? "", Path.GetFullPath(cacheDir),
            options.FscacheTag, AdoptDevice);
        return takeover
            ? FscacheServiceActor.PropsForTakeover(options.FscacheThreads, askTimeout, handoff, metrics, caches)
            : FscacheServiceActor.Props(device!, options.FscacheThreads, askTimeout, handoff, metrics, caches);
    }

    /// <summary>A received descriptor as the device kind this process uses (the test hook picks the simulation).</summary>
    private static ICachefilesDevice AdoptDevice(Microsoft.Win32.SafeHandles.SafeFileHandle descriptor) =>
        Environment.GetEnvironmentVariable(SimulatedCachefilesDevice.SocketVariable) is { Length: > 0 } socket
            ? SimulatedCachefilesDevice.Adopt(descriptor, socket)
            : CachefilesDevice.Adopt(descriptor);
}
