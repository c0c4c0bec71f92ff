using System.Net.Sockets;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;
using Nydus.Actors.Interop;

namespace Nydus.Actors.Fscache;

/// <summary>
/// Unix SOCK_SEQPACKET messages with an optional descriptor (SCM_RIGHTS): one send is one receive, as one read of
/// <c>/dev/cachefiles</c> is one request. Used by the simulated device and kernel only.
/// </summary>
internal static unsafe class SeqPacket
{
    private const int MsgDontWait = 0x40;
    private const int MsgNoSignal = 0x4000;
    private const int MsgCmsgCloexec = 0x40000000;
    // CMSG_SPACE(sizeof(int)) for one descriptor, with room to notice (and close) extras.
    private const int ControlSize = 64;

    /// <summary>A connected socket's descriptor, owned by the caller (the <see cref="Socket"/> object is dropped).</summary>
    public static SafeFileHandle Connect(string path)
    {
        using var socket = new Socket(AddressFamily.Unix, SocketType.Seqpacket, ProtocolType.Unspecified);
        socket.Connect(new UnixDomainSocketEndPoint(path));
        return Libc.Duplicate(new SafeFileHandle(socket.Handle, ownsHandle: false));
    }

    /// <summary>Sends one message carrying <paramref name="fd"/> when it is not -1.</summary>
    public static void Send(SafeHandle socket, ReadOnlySpan<byte> data, int fd = -1)
    {
        byte* control = stackalloc byte[ControlSize];
        new Span<byte>(control, ControlSize).Clear();
        bool added = false;
        try
        {
            socket.DangerousAddRef(ref added);
            fixed (byte* bytes = data)
            {
                var vector = new Libc.IoVec { Base = bytes, Length = (nuint)data.Length };
                var message = new Libc.MessageHeader { Vectors = &vector, VectorCount = 1 };
                if (fd >= 0)
                {
                    var header = (Libc.ControlMessageHeader*)control;
                    header->Length = (nuint)(sizeof(Libc.ControlMessageHeader) + sizeof(int));
                    header->Level = Libc.SOL_SOCKET;
                    header->Type = Libc.SCM_RIGHTS;
                    *(int*)(control + sizeof(Libc.ControlMessageHeader)) = fd;
                    message.Control = control;
                    message.ControlLength = 24;
                }

                nint sent;
                do sent = Libc.SendMessage((int)socket.DangerousGetHandle(), &message, MsgNoSignal);
                while (sent < 0 && Libc.LastErrno == Errno.EINTR);
                if (sent < 0) throw new IOException($"sendmsg failed: {Libc.LastErrno}");
            }
        }
        finally
        {
            if (added) socket.DangerousRelease();
        }
    }

    /// <summary>
    /// Receives one message; <paramref name="fd"/> is a descriptor it carried (close-on-exec, owned by the caller)
    /// or -1. Returns the length, 0 at end of stream, -1 with <see cref="Errno.EAGAIN"/> when
    /// <paramref name="nonBlocking"/> and nothing is there. Throws on other errors.
    /// </summary>
    public static int Receive(SafeHandle socket, Span<byte> buffer, bool nonBlocking, out int fd)
    {
        fd = -1;
        byte* control = stackalloc byte[ControlSize];
        new Span<byte>(control, ControlSize).Clear();
        bool added = false;
        try
        {
            socket.DangerousAddRef(ref added);
            fixed (byte* bytes = buffer)
            {
                var vector = new Libc.IoVec { Base = bytes, Length = (nuint)buffer.Length };
                var message = new Libc.MessageHeader { Vectors = &vector, VectorCount = 1, Control = control, ControlLength = ControlSize };
                nint received;
                do received = Libc.ReceiveMessage((int)socket.DangerousGetHandle(), &message, MsgCmsgCloexec | (nonBlocking ? MsgDontWait : 0));
                while (received < 0 && Libc.LastErrno == Errno.EINTR);
                if (received < 0)
                {
                    var errno = Libc.LastErrno;
                    if (errno == Errno.EAGAIN) return -1;
                    throw new IOException($"recvmsg failed: {errno}");
                }

                if (message.ControlLength >= (nuint)sizeof(Libc.ControlMessageHeader))
                {
                    var header = (Libc.ControlMessageHeader*)control;
                    if (header->Level == Libc.SOL_SOCKET && header->Type == Libc.SCM_RIGHTS)
                    {
                        int count = (int)((header->Length - (nuint)sizeof(Libc.ControlMessageHeader)) / sizeof(int));
                        int* fds = (int*)(control + sizeof(Libc.ControlMessageHeader));
                        if (count > 0) fd = fds[0];
                        for (int i = 1; i < count; i++) Libc.Close(fds[i]);
                    }
                }

                return (int)received;
            }
        }
        finally
        {
            if (added) socket.DangerousRelease();
        }
    }
}
