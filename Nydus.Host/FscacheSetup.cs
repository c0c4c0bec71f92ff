using Akka.Actor;
using Nydus.Actors.Fscache;

namespace Nydus.Host;

/// <summary>
/// <c>nydusd singleton --fscache DIR [--fscache-tag T] [--fscache-threads N]</c>: opens and binds the cachefiles
/// device, or, when the test hook <c>NYDUS_TEST_CACHEFILES_SOCKET</c> names a socket, connects to a simulated kernel
/// there instead (<see cref="SimulatedCachefilesDevice"/>; this machine's kernel has no cachefiles module).
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

    public static Props? ServiceProps(ICachefilesDevice? device, NydusdOptions options, TimeSpan askTimeout) =>
        device is null ? null : FscacheServiceActor.Props(device, options.FscacheThreads, askTimeout);
}
