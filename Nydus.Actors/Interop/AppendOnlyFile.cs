using Microsoft.Win32.SafeHandles;

namespace Nydus.Actors.Interop;

/// <summary>
/// Appends text to a file opened with O_APPEND, so that every write lands at the file's end at the moment it is
/// made, whoever else appends. .NET's <c>FileMode.Append</c> does not use O_APPEND (it seeks to the end once, at
/// open): two writers that open the file at the same time both write at the same offset and one line is lost, and a
/// process writing through its own O_APPEND descriptor (a daemon's stdout) can be overwritten.
/// </summary>
internal static class AppendOnlyFile
{
    /// <summary>Appends <paramref name="text"/> (UTF-8) with one write(2), creating the file with
    /// <paramref name="createMode"/> (the umask applies) if it does not exist.</summary>
    public static unsafe void Append(string path, string text, UnixFileMode createMode)
    {
        var fd = Libc.Open(PathBytes.FromString(path), Libc.O_WRONLY | Libc.O_CREAT | Libc.O_APPEND | Libc.O_CLOEXEC, (uint)createMode);
        if (fd < 0) throw new IOException($"cannot open {path} to append: {Libc.LastErrno}");
        using var handle = new SafeFileHandle(fd, ownsHandle: true);
        var bytes = System.Text.Encoding.UTF8.GetBytes(text);
        fixed (byte* start = bytes)
        {
            // A regular file takes the whole write at once (a short write here means the disk is full).
            for (int done = 0; done < bytes.Length;)
            {
                var written = Libc.Write(handle, start + done, (nuint)(bytes.Length - done));
                if (written < 0)
                {
                    if (Libc.LastErrno == Errno.EINTR) continue;
                    throw new IOException($"cannot append to {path}: {Libc.LastErrno}");
                }
                if (written == 0) throw new IOException($"cannot append to {path}: nothing written");
                done += (int)written;
            }
        }
    }
}
