using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Globalization;
using Microsoft.Win32.SafeHandles;

namespace Nydus.Actors.Fscache;

/// <summary>
/// The daemon's end of a simulated <c>/dev/cachefiles</c> (a test double; see <see cref="Simulation.SimulatedCachefilesKernel"/>):
/// a Unix SOCK_SEQPACKET connection on which each request is one message in the uapi layout and an OPEN carries
/// the object's anonymous fd as SCM_RIGHTS (this device writes the received descriptor's number into the OPEN's fd
/// field, as the kernel installs it). Commands are sent as the text written to the real device. The read
/// completion ioctl, which has no socket equivalent, is sent as <c>cread &lt;msg_id&gt;,&lt;object_id&gt;</c>: the
/// object id is the one whose OPEN brought that descriptor, so the simulation checks the ioctl was issued on the
/// right object's fd, as the kernel does.
/// </summary>
/// <remarks>Selected by the test hook <c>NYDUS_TEST_CACHEFILES_SOCKET</c> (see README); never in production.</remarks>
public sealed class SimulatedCachefilesDevice : ICachefilesDevice
{
    /// <summary>Environment variable naming the simulated kernel's socket: the test hook that replaces /dev/cachefiles.</summary>
    public const string SocketVariable = "NYDUS_TEST_CACHEFILES_SOCKET";

    private readonly SafeFileHandle _socket;
    private readonly SafeFileHandle _stop;
    // Descriptor number -> object id of the OPEN that delivered it (dropped at that object's CLOSE).
    private readonly ConcurrentDictionary<int, uint> _objectOfFd = new();

    private SimulatedCachefilesDevice(SafeFileHandle socket)
    {
        _socket = socket;
        _stop = CachefilesPolling.CreateStopEvent();
    }

    public SafeFileHandle Handle => _socket;

    public static SimulatedCachefilesDevice ConnectAndBind(string socketPath, string cacheDir, string? tag)
    {
        var device = new SimulatedCachefilesDevice(SeqPacket.Connect(socketPath));
        try
        {
            CachefilesPolling.Bind(device, cacheDir, tag);
            return device;
        }
        catch
        {
            device.Dispose();
            throw;
        }
    }

    /// <summary>A successor's device on the predecessor's connection, then <c>restore</c>.</summary>
    public static SimulatedCachefilesDevice Adopt(SafeFileHandle inherited)
    {
        var device = new SimulatedCachefilesDevice(inherited);
        device.Write(CachefilesCommands.Restore);
        return device;
    }

    public int Read(Span<byte> buffer)
    {
        while (true)
        {
            if (!CachefilesPolling.WaitReadable(_socket, _stop)) return 0;
            int n = SeqPacket.Receive(_socket, buffer, nonBlocking: true, out int fd);
            if (n < 0) continue; // another worker took it
            if (n == 0) throw new IOException("the simulated cachefiles kernel closed the connection");
            if (n >= CachefilesMessage.HeaderSize)
            {
                uint opcode = BinaryPrimitives.ReadUInt32LittleEndian(buffer[4..]);
                uint objectId = BinaryPrimitives.ReadUInt32LittleEndian(buffer[12..]);
                if (fd >= 0 && opcode == (uint)CachefilesOpcode.Open && n >= CachefilesMessage.OpenFdOffset + 4)
                {
                    _objectOfFd[fd] = objectId;
                    BinaryPrimitives.WriteInt32LittleEndian(buffer[CachefilesMessage.OpenFdOffset..], fd);
                    fd = -1;
                }
                else if (opcode == (uint)CachefilesOpcode.Close)
                {
                    foreach (var (number, id) in _objectOfFd)
                        if (id == objectId) _objectOfFd.TryRemove(new KeyValuePair<int, uint>(number, id));
                }
            }

            // A descriptor on anything but an OPEN is not the kernel's way: do not leak it.
            if (fd >= 0) Interop.Libc.Close(fd);
            return n;
        }
    }

    public void Write(string command) => CachefilesPolling.WriteCommand(_socket, command, SocketVariable);

    public void CompleteRead(SafeFileHandle objectFd, uint messageId)
    {
        long objectId = _objectOfFd.TryGetValue((int)objectFd.DangerousGetHandle(), out uint id) ? id : -1;
        Write(string.Create(CultureInfo.InvariantCulture, $"cread {messageId},{objectId}"));
    }

    public void Wake() => Interop.Libc.SignalEvent(_stop);

    public void Dispose()
    {
        _socket.Dispose();
        _stop.Dispose();
    }
}
