using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Nydus.Actors.Interop;

/// <summary>
/// mmap(2)/munmap(2) of shared descriptors and recvmsg(2)/sendmsg(2) carrying several SCM_RIGHTS descriptors: what a
/// vhost-user backend needs to map the guest's memory regions and take its eventfds.
/// </summary>
internal static partial class Libc
{
    public const int PROT_READ = 0x1;
    public const int PROT_WRITE = 0x2;
    public const int MAP_SHARED = 0x01;
    public const int MSG_CMSG_CLOEXEC = 0x40000000;
    public const int MSG_NOSIGNAL = 0x4000;

    /// <summary>Most descriptors one vhost-user message carries (VHOST_MEMORY_BASELINE_NREGIONS).</summary>
    public const int MaxMessageDescriptors = 8;

    [LibraryImport("libc", EntryPoint = "mmap", SetLastError = true)]
    public static partial nint MapMemory(nint address, nuint length, int protection, int flags, int fd, long offset);

    [LibraryImport("libc", EntryPoint = "munmap", SetLastError = true)]
    public static partial int UnmapMemory(nint address, nuint length);

    /// <summary>mmap(2) of <paramref name="length"/> bytes of <paramref name="fd"/> at <paramref name="offset"/>, shared, read-write.</summary>
    /// <returns>The address, or 0 with <see cref="LastErrno"/> set.</returns>
    public static nint MapShared(SafeFileHandle fd, ulong length, long offset)
    {
        bool added = false;
        try
        {
            fd.DangerousAddRef(ref added);
            nint address = MapMemory(0, (nuint)length, PROT_READ | PROT_WRITE, MAP_SHARED, (int)fd.DangerousGetHandle(), offset);
            return address == -1 ? 0 : address;
        }
        finally
        {
            if (added) fd.DangerousRelease();
        }
    }

    /// <summary>
    /// Receives up to <paramref name="data"/>.Length bytes and the descriptors that ride along (closed-on-exec, owned by
    /// the caller, in <paramref name="descriptors"/>). Descriptors beyond <see cref="MaxMessageDescriptors"/> are
    /// truncated by the kernel (MSG_CTRUNC) and reported as an error.
    /// </summary>
    /// <returns>Bytes received (0: the peer closed), or -1 with <see cref="LastErrno"/> (EMSGSIZE: too many descriptors).</returns>
    public static unsafe nint ReceiveWithDescriptors(SafeFileHandle socket, Span<byte> data, List<SafeFileHandle> descriptors)
    {
        const int MSG_CTRUNC = 0x8;
        // CMSG_SPACE(8 * sizeof(int)) = 16 + 32.
        const int ControlSize = 16 + MaxMessageDescriptors * sizeof(int);
        byte* control = stackalloc byte[ControlSize];
        new Span<byte>(control, ControlSize).Clear();
        bool added = false;
        try
        {
            socket.DangerousAddRef(ref added);
            fixed (byte* buffer = data)
            {
                var vector = new IoVec { Base = buffer, Length = (nuint)data.Length };
                var message = new MessageHeader { Vectors = &vector, VectorCount = 1, Control = control, ControlLength = ControlSize };
                nint received;
                do
                {
                    received = ReceiveMessage((int)socket.DangerousGetHandle(), &message, MSG_CMSG_CLOEXEC);
                }
                while (received < 0 && LastErrno == Errno.EINTR);

                if (received < 0) return received;
                if (message.ControlLength >= (nuint)sizeof(ControlMessageHeader))
                {
                    var header = (ControlMessageHeader*)control;
                    if (header->Level == SOL_SOCKET && header->Type == SCM_RIGHTS)
                    {
                        int count = (int)((header->Length - (nuint)sizeof(ControlMessageHeader)) / sizeof(int));
                        int* fds = (int*)(control + sizeof(ControlMessageHeader));
                        for (int i = 0; i < count && i < MaxMessageDescriptors; i++)
                        {
                            descriptors.Add(new SafeFileHandle(fds[i], ownsHandle: true));
                        }
                    }
                }

                if ((message.Flags & MSG_CTRUNC) != 0)
                {
                    Marshal.SetLastPInvokeError((int)Errno.EMSGSIZE);
                    return -1;
                }

                return received;
            }
        }
        finally
        {
            if (added) socket.DangerousRelease();
        }
    }

    /// <summary>send(2) of all of <paramref name="data"/> without SIGPIPE; returns false with <see cref="LastErrno"/> set.</summary>
    public static unsafe bool SendAll(SafeFileHandle socket, ReadOnlySpan<byte> data)
    {
        bool added = false;
        try
        {
            socket.DangerousAddRef(ref added);
            fixed (byte* buffer = data)
            {
                int sent = 0;
                while (sent < data.Length)
                {
                    var vector = new IoVec { Base = buffer + sent, Length = (nuint)(data.Length - sent) };
                    var message = new MessageHeader { Vectors = &vector, VectorCount = 1 };
                    nint n = SendMessage((int)socket.DangerousGetHandle(), &message, MSG_NOSIGNAL);
                    if (n < 0)
                    {
                        if (LastErrno == Errno.EINTR) continue;
                        return false;
                    }

                    sent += (int)n;
                }

                return true;
            }
        }
        finally
        {
            if (added) socket.DangerousRelease();
        }
    }

    /// <summary>Reads (and so resets) an eventfd counter; returns false when nothing was pending (EAGAIN) or on error.</summary>
    public static unsafe bool ConsumeEvent(SafeFileHandle eventFd)
    {
        ulong value;
        return Read(eventFd, (byte*)&value, sizeof(ulong)) == sizeof(ulong);
    }
}
