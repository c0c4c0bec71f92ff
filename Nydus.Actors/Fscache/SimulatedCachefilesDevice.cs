using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Globalization;
using Microsoft.Win32.SafeHandles;

namespace Nydus.Actors.Fscache;

/// <summary>
/// The daemon's end of a simulated <c>/dev/cachefiles</c> (a test double; see <see cref="Simulation.SimulatedCachefilesKernel"/>):
/// a Unix SOCK_SEQPACKET connection on which each request is one message in the uapi layout and an OPEN carries
/// the object's anonymous fd as SCM_RIGHTS (this device writes the received descriptor's number into the OPEN's fd
/// field, as the kernel installs it). Commands are sent as the text written to the real device. Two things the real
/// device learns from syscalls are sent as messages instead:
/// <list type="bullet">
/// <item>the read completion ioctl, as <c>cread &lt;msg_id&gt;,&lt;object_id&gt;</c>: the object id is the one whose
/// OPEN brought that descriptor, so the simulation checks the ioctl was issued on the right object's fd;</item>
/// <item>a command naming a cache file relative to the working directory (<c>inuse</c>, <c>cull</c>), which the
/// kernel resolves in the writer's working directory and answers with the write's errno: sent on a connection of
/// its own as <c>syscall &lt;the calling thread's cwd&gt;\n&lt;command&gt;</c>, answered with the errno's number;</item>
/// <item>the read(2) itself, as <c>read &lt;msg_id&gt;</c> as soon as a request is taken off the socket: the kernel
/// knows which requests a daemon has read (it clears their "new" mark), and <c>restore</c> offers again only
/// those read and not answered; a request still in the socket queue has not been read.</item>
/// </list>
/// </summary>
/// <remarks>Selected by the test hook <c>NYDUS_TEST_CACHEFILES_SOCKET</c> (see README); never in production.</remarks>
public sealed class SimulatedCachefilesDevice : CachefilesChannel
{
    /// <summary>Environment variable naming the simulated kernel's socket: the test hook that replaces /dev/cachefiles.</summary>
    public const string SocketVariable = "NYDUS_TEST_CACHEFILES_SOCKET";

    /// <summary>The stand-in for the read(2) the kernel sees: <c>read &lt;msg_id&gt;</c>.</summary>
    public const string ReadNotice = "read ";

    /// <summary>The first line of a file command's connection: the writer's working directory follows.</summary>
    public const string SyscallPrefix = "syscall ";

    private readonly string? _socketPath;

    // Descriptor number -> object id of the OPEN that delivered it (dropped at that object's CLOSE).
    private readonly ConcurrentDictionary<int, uint> _objectOfFd = new();

    private SimulatedCachefilesDevice(SafeFileHandle socket, string? socketPath) : base(socket, SocketVariable)
    {
        _socketPath = socketPath;
    }

    public static SimulatedCachefilesDevice ConnectAndBind(string socketPath, string cacheDir, string? tag) =>
        Bind(new SimulatedCachefilesDevice(SeqPacket.Connect(socketPath), socketPath), cacheDir, tag);

    /// <summary>A successor's device on the predecessor's connection (<c>restore</c> is written when it starts
    /// serving); <paramref name="socketPath"/> (the test hook's) for file commands.</summary>
    public static SimulatedCachefilesDevice Adopt(SafeFileHandle inherited, string? socketPath) => new(inherited, socketPath);

    public override Interop.Errno FileCommand(string command)
    {
        if (_socketPath is null) throw new IOException($"{SocketVariable} is not set: file commands have nowhere to go");
        // What the kernel reads from current->fs: this thread's working directory.
        string cwd = new DirectoryInfo("/proc/thread-self/cwd").ResolveLinkTarget(returnFinalTarget: false)?.FullName
            ?? throw new IOException("cannot read /proc/thread-self/cwd");
        using var connection = SeqPacket.Connect(_socketPath);
        SeqPacket.Send(connection, System.Text.Encoding.UTF8.GetBytes($"{SyscallPrefix}{cwd}\n{command}"));
        var reply = new byte[32];
        int n = SeqPacket.Receive(connection, reply, nonBlocking: false, out int fd);
        if (fd >= 0) Interop.Libc.Close(fd);
        if (n <= 0 || !int.TryParse(reply.AsSpan(0, n), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out int errno))
            throw new IOException($"the simulated cachefiles kernel did not answer \"{command}\"");
        return (Interop.Errno)errno;
    }

    protected override int TryReceive(Span<byte> buffer)
    {
        int n = SeqPacket.Receive(Handle, buffer, nonBlocking: true, out int fd);
        if (n < 0) return -1; // another worker took it
        if (n == 0) throw new IOException("the simulated cachefiles kernel closed the connection");
        if (n >= CachefilesMessage.HeaderSize)
        {
            uint messageId = BinaryPrimitives.ReadUInt32LittleEndian(buffer);
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

            Write(string.Create(CultureInfo.InvariantCulture, $"{ReadNotice}{messageId}"));
        }

        // A descriptor on anything but an OPEN is not the kernel's way: do not leak it.
        if (fd >= 0) Interop.Libc.Close(fd);
        return n;
    }

    public override void CompleteRead(SafeFileHandle objectFd, uint messageId)
    {
        long objectId = _objectOfFd.TryGetValue((int)objectFd.DangerousGetHandle(), out uint id) ? id : -1;
        Write(string.Create(CultureInfo.InvariantCulture, $"cread {messageId},{objectId}"));
    }
}
