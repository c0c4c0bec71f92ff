using System.Runtime.InteropServices;
using System.Text;

namespace Nydus.Actors.Tests.Upgrade;

/// <summary>
/// A directory opened with open(2) and read with getdents64(2), kept open across handoffs: the .NET enumeration
/// APIs open and close the directory per call, which would not prove that a handle opened before an upgrade still
/// works after it.
/// </summary>
public sealed partial class DirectoryHandle : IDisposable
{
    private const int ODirectory = 0x10000;
    private const long SysGetdents64 = 217;
    private int _fd;

    public DirectoryHandle(string path)
    {
        _fd = Open(path, ODirectory);
        if (_fd < 0) throw new IOException($"open({path}) failed: errno {Marshal.GetLastPInvokeError()}");
    }

    /// <summary>Rewinds and reads every entry name but "." and "..", sorted.</summary>
    public string[] ReadNames()
    {
        if (LSeek(_fd, 0, 0) < 0) throw new IOException($"lseek failed: errno {Marshal.GetLastPInvokeError()}");
        var names = new List<string>();
        var buffer = new byte[16384];
        while (true)
        {
            long n = GetDents(SysGetdents64, _fd, buffer, buffer.Length);
            if (n < 0) throw new IOException($"getdents64 failed: errno {Marshal.GetLastPInvokeError()}");
            if (n == 0) break;
            // struct linux_dirent64 { u64 d_ino; s64 d_off; u16 d_reclen; u8 d_type; char d_name[]; }
            for (int at = 0; at < n;)
            {
                int length = BitConverter.ToUInt16(buffer, at + 16);
                int nameStart = at + 19;
                int nameEnd = Array.IndexOf(buffer, (byte)0, nameStart);
                var name = Encoding.UTF8.GetString(buffer, nameStart, nameEnd - nameStart);
                if (name is not "." and not "..") names.Add(name);
                at += length;
            }
        }
        names.Sort(StringComparer.Ordinal);
        return [.. names];
    }

    public void Dispose()
    {
        if (_fd >= 0) Close(_fd);
        _fd = -1;
    }

    [LibraryImport("libc", EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "lseek", SetLastError = true)]
    private static partial long LSeek(int fd, long offset, int whence);

    [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true)]
    private static partial long GetDents(long number, int fd, byte[] buffer, long count);

    [LibraryImport("libc", EntryPoint = "close")]
    private static partial int Close(int fd);
}
