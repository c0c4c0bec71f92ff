using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Nydus.Actors.Interop;

/// <summary>socketpair(2) and recvmsg(2), for receiving the /dev/fuse descriptor from fusermount3.</summary>
internal static partial class Libc
{
    public const int AF_UNIX = 1;
    public const int SOCK_STREAM = 1;
    public const int SOL_SOCKET = 1;
    public const int SCM_RIGHTS = 1;

    [StructLayout(LayoutKind.Sequential)]
    public unsafe struct IoVec
    {
        public void* Base;
        public nuint Length;
    }

    [StructLayout(LayoutKind.Sequential)]
    public unsafe struct MessageHeader
    {
        public void* Name;
        public uint NameLength;
        public IoVec* Vectors;
        public nuint VectorCount;
        public void* Control;
        public nuint ControlLength;
        public int Flags;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct ControlMessageHeader
    {
        public nuint Length;
        public int Level;
        public int Type;
    }

    [LibraryImport("libc", EntryPoint = "socketpair", SetLastError = true)]
    public static unsafe partial int SocketPair(int domain, int type, int protocol, int* fds);

    [LibraryImport("libc", EntryPoint = "recvmsg", SetLastError = true)]
    public static unsafe partial nint ReceiveMessage(int socket, MessageHeader* message, int flags);

    [LibraryImport("libc", EntryPoint = "sendmsg", SetLastError = true)]
    public static unsafe partial nint SendMessage(int socket, MessageHeader* message, int flags);

    [LibraryImport("libc", EntryPoint = "writev", SetLastError = true)]
    public static unsafe partial nint WriteVector(SafeFileHandle fd, IoVec* vectors, int count);

    /// <summary>A connected AF_UNIX stream pair, both ends close-on-exec.</summary>
    public static unsafe Errno CreateSocketPair(out SafeFileHandle first, out SafeFileHandle second)
    {
        const int SOCK_CLOEXEC = 0x80000;
        int* pair = stackalloc int[2];
        if (SocketPair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0)
        {
            first = second = new SafeFileHandle();
            return LastErrno;
        }

        first = new SafeFileHandle(pair[0], ownsHandle: true);
        second = new SafeFileHandle(pair[1], ownsHandle: true);
        return Errno.Success;
    }

    /// <summary>Lets a child process inherit <paramref name="fd"/> by clearing its close-on-exec flag.</summary>
    public static Errno AllowInheritance(SafeFileHandle fd)
    {
        const int F_SETFD = 2;
        return Fcntl(fd, F_SETFD, 0) == 0 ? Errno.Success : LastErrno;
    }

    /// <summary>Receives one descriptor passed with SCM_RIGHTS (one data byte rides along).</summary>
    /// <returns>The descriptor, owned by the caller, or null when none arrived.</returns>
    public static unsafe SafeFileHandle? ReceiveDescriptor(SafeFileHandle socket)
    {
        byte data;
        var vector = new IoVec { Base = &data, Length = 1 };

        // CMSG_SPACE(sizeof(int)): the 16-byte header plus one int padded to 8.
        const int ControlSize = 24;
        byte* control = stackalloc byte[ControlSize];
        new Span<byte>(control, ControlSize).Clear();
        var message = new MessageHeader { Vectors = &vector, VectorCount = 1, Control = control, ControlLength = ControlSize };
        bool added = false;
        try
        {
            socket.DangerousAddRef(ref added);
            nint received;
            do
            {
                received = ReceiveMessage((int)socket.DangerousGetHandle(), &message, 0);
            }
            while (received < 0 && LastErrno == Errno.EINTR);

            if (received <= 0 || message.ControlLength < (nuint)sizeof(ControlMessageHeader))
            {
                return null;
            }
        }
        finally
        {
            if (added)
            {
                socket.DangerousRelease();
            }
        }

        var header = (ControlMessageHeader*)control;
        if (header->Level != SOL_SOCKET || header->Type != SCM_RIGHTS)
        {
            return null;
        }

        return new SafeFileHandle(*(int*)(control + sizeof(ControlMessageHeader)), ownsHandle: true);
    }
}
