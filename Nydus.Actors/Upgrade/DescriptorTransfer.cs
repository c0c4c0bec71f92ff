using System.Runtime.InteropServices;
using System.Net.Sockets;
using Microsoft.Win32.SafeHandles;
using Nydus.Actors.Interop;

namespace Nydus.Actors.Upgrade;

/// <summary>
/// One state transfer over a connected Unix stream socket, exactly upstream's wire use
/// (<c>upgrade/src/backend/unix_domain_socket.rs</c>): the sender does one <c>sendmsg</c> carrying the bytes and one
/// descriptor (SCM_RIGHTS), writes any remainder, and closes; the receiver does one <c>recvmsg</c> into 32 KiB with room
/// for 16 descriptors, then reads to EOF. No framing. Every call is bounded by the socket's send/receive timeouts.
/// </summary>
public static class DescriptorTransfer
{
    /// <summary>Upstream's first-read size.</summary>
    public const int FirstReadSize = 32 * 1024;

    /// <summary>Upstream's descriptor room in the first read.</summary>
    public const int MaxDescriptors = 16;

    /// <summary>Sends <paramref name="data"/> with <paramref name="descriptor"/> and half-closes the socket.</summary>
    public static unsafe void Send(Socket socket, ReadOnlySpan<byte> data, SafeHandle descriptor, TimeSpan timeout)
    {
        ArgumentNullException.ThrowIfNull(descriptor);
        if (descriptor.IsInvalid || descriptor.IsClosed)
        {
            throw new UpgradeException(UpgradeErrorKind.NoEnoughFds, "no descriptor to send with the state");
        }

        ApplyTimeout(socket, timeout);
        // CMSG_SPACE(sizeof(int)) = 16-byte header + 4, padded to 8.
        const int ControlSize = 24;
        byte* control = stackalloc byte[ControlSize];
        new Span<byte>(control, ControlSize).Clear();
        var header = (Libc.ControlMessageHeader*)control;
        header->Length = (nuint)(sizeof(Libc.ControlMessageHeader) + sizeof(int));
        header->Level = Libc.SOL_SOCKET;
        header->Type = Libc.SCM_RIGHTS;

        bool addedFd = false, addedSocket = false;
        int sent;
        try
        {
            descriptor.DangerousAddRef(ref addedFd);
            socket.SafeHandle.DangerousAddRef(ref addedSocket);
            *(int*)(control + sizeof(Libc.ControlMessageHeader)) = (int)descriptor.DangerousGetHandle();
            // sendmsg needs at least one data byte to carry the control message; upstream always has state bytes.
            byte empty = 0;
            fixed (byte* bytes = data)
            {
                var vector = new Libc.IoVec { Base = data.Length > 0 ? bytes : &empty, Length = (nuint)Math.Max(1, data.Length) };
                var message = new Libc.MessageHeader
                {
                    Vectors = &vector, VectorCount = 1, Control = control, ControlLength = ControlSize,
                };
                nint result;
                do
                {
                    result = Libc.SendMessage((int)socket.SafeHandle.DangerousGetHandle(), &message, MsgNoSignal);
                }
                while (result < 0 && Libc.LastErrno == Errno.EINTR);

                if (result < 0)
                {
                    throw Failure("sendmsg with the descriptor", Libc.LastErrno);
                }

                sent = (int)result;
            }
        }
        finally
        {
            if (addedSocket) socket.SafeHandle.DangerousRelease();
            if (addedFd) descriptor.DangerousRelease();
        }

        try
        {
            while (sent < data.Length)
            {
                sent += socket.Send(data[sent..]);
            }

            socket.Shutdown(SocketShutdown.Send);
        }
        catch (SocketException e)
        {
            throw Translate("writing the state", e);
        }
    }

    /// <summary>Receives state bytes and descriptors until EOF. The first descriptor is returned; extra ones are closed.</summary>
    public static unsafe (byte[] Data, SafeFileHandle Descriptor) Receive(Socket socket, TimeSpan timeout)
    {
        ApplyTimeout(socket, timeout);
        var first = new byte[FirstReadSize];
        // CMSG_SPACE(16 * sizeof(int)) = 16 + 64.
        const int ControlSize = 16 + MaxDescriptors * sizeof(int);
        byte* control = stackalloc byte[ControlSize];
        new Span<byte>(control, ControlSize).Clear();
        int received;
        nuint controlLength;
        bool added = false;
        try
        {
            socket.SafeHandle.DangerousAddRef(ref added);
            fixed (byte* bytes = first)
            {
                var vector = new Libc.IoVec { Base = bytes, Length = (nuint)first.Length };
                var message = new Libc.MessageHeader
                {
                    Vectors = &vector, VectorCount = 1, Control = control, ControlLength = ControlSize,
                };
                nint result;
                do
                {
                    result = Libc.ReceiveMessage((int)socket.SafeHandle.DangerousGetHandle(), &message, MsgCmsgCloexec);
                }
                while (result < 0 && Libc.LastErrno == Errno.EINTR);

                if (result < 0)
                {
                    throw Failure("recvmsg of the state", Libc.LastErrno);
                }

                received = (int)result;
                controlLength = message.ControlLength;
            }
        }
        finally
        {
            if (added) socket.SafeHandle.DangerousRelease();
        }

        var descriptors = new List<SafeFileHandle>();
        if (controlLength >= (nuint)sizeof(Libc.ControlMessageHeader))
        {
            var header = (Libc.ControlMessageHeader*)control;
            if (header->Level == Libc.SOL_SOCKET && header->Type == Libc.SCM_RIGHTS)
            {
                int count = (int)((header->Length - (nuint)sizeof(Libc.ControlMessageHeader)) / sizeof(int));
                for (int i = 0; i < count; i++)
                {
                    descriptors.Add(new SafeFileHandle(((int*)(control + sizeof(Libc.ControlMessageHeader)))[i], ownsHandle: true));
                }
            }
        }

        try
        {
            var all = new MemoryStream();
            all.Write(first, 0, received);
            if (received > 0)
            {
                var chunk = new byte[FirstReadSize];
                int n;
                while ((n = socket.Receive(chunk)) > 0)
                {
                    all.Write(chunk, 0, n);
                }
            }

            if (descriptors.Count == 0)
            {
                throw new UpgradeException(UpgradeErrorKind.NoEnoughFds,
                    $"the state transfer ({all.Length} bytes) carried no descriptor");
            }

            for (int i = 1; i < descriptors.Count; i++)
            {
                descriptors[i].Dispose();
            }

            return (all.ToArray(), descriptors[0]);
        }
        catch (SocketException e)
        {
            foreach (var d in descriptors) d.Dispose();
            throw Translate("reading the state", e);
        }
        catch
        {
            foreach (var d in descriptors) d.Dispose();
            throw;
        }
    }

    /// <summary>Connects to a Unix stream socket path, bounded by <paramref name="timeout"/>.</summary>
    public static Socket Connect(string path, TimeSpan timeout)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            ApplyTimeout(socket, timeout);
            // A Unix stream connect completes at once (accept backlog) or fails; it never waits on the peer.
            socket.Connect(new UnixDomainSocketEndPoint(path));
            return socket;
        }
        catch (SocketException e)
        {
            socket.Dispose();
            throw new UpgradeException(UpgradeErrorKind.Socket, $"cannot connect to supervisor socket {path}: {e.SocketErrorCode}", e);
        }
    }

    private const int MsgNoSignal = 0x4000;
    private const int MsgCmsgCloexec = 0x40000000;

    private static void ApplyTimeout(Socket socket, TimeSpan timeout)
    {
        int ms = (int)Math.Clamp(timeout.TotalMilliseconds, 1, int.MaxValue);
        socket.SendTimeout = ms;
        socket.ReceiveTimeout = ms;
    }

    private static UpgradeException Failure(string what, Errno errno) =>
        errno is Errno.EAGAIN
            ? new UpgradeException(UpgradeErrorKind.Timeout, $"{what} timed out")
            : new UpgradeException(UpgradeErrorKind.Socket, $"{what} failed: {errno}");

    private static UpgradeException Translate(string what, SocketException e) =>
        e.SocketErrorCode is SocketError.TimedOut or SocketError.WouldBlock
            ? new UpgradeException(UpgradeErrorKind.Timeout, $"{what} timed out", e)
            : new UpgradeException(UpgradeErrorKind.Socket, $"{what} failed: {e.SocketErrorCode}", e);
}
