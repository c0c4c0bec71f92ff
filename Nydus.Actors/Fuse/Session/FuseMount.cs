using System.Diagnostics;
using System.Globalization;
using System.Text;
using Microsoft.Win32.SafeHandles;
using Nydus.Actors.Interop;
using Serilog;

namespace Nydus.Actors.Fuse.Session;

/// <summary>
/// Mounting and unmounting FUSE file systems, and reaching a mount's kernel connection.
/// As root the layer opens /dev/fuse and calls mount(2) itself (as upstream nydusd does); otherwise it
/// asks the setuid fusermount3, which passes the descriptor back over a socket (_FUSE_COMMFD).
/// </summary>
public static class FuseMount
{
    private const string DevicePath = "/dev/fuse";
    private const string ConnectionsPath = "/sys/fs/fuse/connections";
    private const string Fusermount = "fusermount3";

    private static readonly ILogger Log = Serilog.Log.ForContext(typeof(FuseMount));

    /// <summary>Mounts a FUSE file system at <paramref name="mountPoint"/> and returns its open device.</summary>
    /// <exception cref="FuseException">Kind MountFailed, with the errno of the failing step.</exception>
    public static FuseDevice Mount(string mountPoint, FuseMountOptions options)
    {
        string target = MountInfoEntry.Normalize(mountPoint);
        bool asRoot = Libc.GetEffectiveUid() == 0 && !options.ForceFusermount;
        SafeFileHandle handle = asRoot ? MountDirectly(target, options) : MountWithFusermount(target, options);
        Log.Information("Mounted FUSE {Source} at {MountPoint} (fd {Fd}, read-only {ReadOnly})",
            options.Source, target, (int)handle.DangerousGetHandle(), options.ReadOnly);
        return new FuseDevice(handle, target);
    }

    /// <summary>Unmounts; a busy mount is detached lazily. Without root fusermount3 -u -z does it.</summary>
    /// <returns>False when nothing was mounted there.</returns>
    /// <exception cref="FuseException">Kind UnmountFailed.</exception>
    public static bool Unmount(string mountPoint)
    {
        string target = MountInfoEntry.Normalize(mountPoint);
        if (MountInfoEntry.Find(target) is not { IsFuse: true })
        {
            return false;
        }

        if (Libc.Umount2(target, 0) == 0)
        {
            return true;
        }

        Errno errno = Libc.LastErrno;
        if (errno == Errno.EBUSY && Libc.Umount2(target, Libc.MNT_DETACH) == 0)
        {
            Log.Warning("FUSE mount at {MountPoint} was busy and is detached lazily", target);
            return true;
        }

        if (errno == Errno.EPERM)
        {
            RunFusermount(["-u", "-z", "--", target], environment: null);
            return true;
        }

        throw new FuseException(FuseErrorKind.UnmountFailed, errno, $"umount2 of {target} failed: {errno}");
    }

    /// <summary>
    /// The connection id of the FUSE mount at <paramref name="mountPoint"/>: the device minor from
    /// /proc/self/mountinfo (the mountpoint itself is never stat()ed: that hangs on a dead server).
    /// </summary>
    /// <returns>Null when no FUSE file system is mounted there.</returns>
    public static uint? FindConnectionId(string mountPoint) =>
        MountInfoEntry.Find(mountPoint) is { IsFuse: true } entry ? entry.Minor : null;

    /// <summary>Whether a FUSE file system is mounted at <paramref name="mountPoint"/> (per mountinfo).</summary>
    public static bool IsMounted(string mountPoint) => MountInfoEntry.Find(mountPoint) is { IsFuse: true };

    /// <summary>
    /// Aborts the connection: every pending and future request fails with ENOTCONN, the server's reads
    /// return ENODEV. Mounts fusectl on /sys/fs/fuse/connections first if nobody has.
    /// </summary>
    /// <exception cref="FuseException">Kind AbortFailed.</exception>
    public static void Abort(uint connectionId)
    {
        string abortFile = Path.Combine(ConnectionsPath, connectionId.ToString(CultureInfo.InvariantCulture), "abort");
        if (!File.Exists(abortFile) && !Directory.EnumerateFileSystemEntries(ConnectionsPath).Any())
        {
            if (Libc.Mount("fusectl", ConnectionsPath, "fusectl", 0, string.Empty) != 0 && Libc.LastErrno != Errno.EBUSY)
            {
                throw new FuseException(FuseErrorKind.AbortFailed, Libc.LastErrno, $"cannot mount fusectl on {ConnectionsPath}: {Libc.LastErrno}");
            }
        }

        try
        {
            File.WriteAllText(abortFile, "1");
        }
        catch (Exception exception) when (exception is IOException or UnauthorizedAccessException)
        {
            throw new FuseException(FuseErrorKind.AbortFailed, Errno.EIO, $"cannot abort FUSE connection {connectionId} via {abortFile}", exception);
        }

        Log.Warning("Aborted FUSE connection {ConnectionId}", connectionId);
    }

    internal static string KernelMountData(int fd, FuseMountOptions options)
    {
        var data = new StringBuilder();
        data.Append(CultureInfo.InvariantCulture, $"fd={fd},rootmode=40000");
        data.Append(CultureInfo.InvariantCulture, $",user_id={options.UserId ?? Libc.GetEffectiveUid()}");
        data.Append(CultureInfo.InvariantCulture, $",group_id={options.GroupId ?? Libc.GetEffectiveGid()}");
        AppendCommonOptions(data, options);
        return data.ToString();
    }

    private static void AppendCommonOptions(StringBuilder data, FuseMountOptions options)
    {
        if (options.AllowOther)
        {
            data.Append(",allow_other");
        }

        if (options.DefaultPermissions)
        {
            data.Append(",default_permissions");
        }

        if (options.MaxRead > 0)
        {
            data.Append(CultureInfo.InvariantCulture, $",max_read={options.MaxRead}");
        }
    }

    private static SafeFileHandle MountDirectly(string target, FuseMountOptions options)
    {
        SafeFileHandle? device = Libc.Own(Libc.Open("/dev/fuse\0"u8, Libc.O_RDWR | Libc.O_CLOEXEC, 0));
        if (device is null)
        {
            Errno errno = Libc.LastErrno;
            throw new FuseException(FuseErrorKind.MountFailed, errno, $"cannot open {DevicePath}: {errno}");
        }

        ulong flags = Libc.MS_NOSUID | Libc.MS_NODEV | Libc.MS_NOATIME;
        if (options.ReadOnly)
        {
            flags |= Libc.MS_RDONLY;
        }

        string fileSystemType = options.Subtype is null ? "fuse" : "fuse." + options.Subtype;
        string data = KernelMountData((int)device.DangerousGetHandle(), options);
        if (Libc.Mount(options.Source, target, fileSystemType, flags, data) != 0)
        {
            Errno errno = Libc.LastErrno;
            device.Dispose();
            throw new FuseException(FuseErrorKind.MountFailed, errno, $"mount of {fileSystemType} at {target} ({data}) failed: {errno}");
        }

        return device;
    }

    private static SafeFileHandle MountWithFusermount(string target, FuseMountOptions options)
    {
        Errno pairError = Libc.CreateSocketPair(out SafeFileHandle ours, out SafeFileHandle theirs);
        using (ours)
        using (theirs)
        {
            if (pairError != Errno.Success)
            {
                throw new FuseException(FuseErrorKind.MountFailed, pairError, $"socketpair for {Fusermount} failed: {pairError}");
            }

            // fusermount3 must inherit its end: clear close-on-exec on that one descriptor only.
            Libc.AllowInheritance(theirs);

            var mountOptions = new StringBuilder(options.ReadOnly ? "ro" : "rw");
            mountOptions.Append(",nosuid,nodev,noatime");
            mountOptions.Append(",fsname=").Append(options.Source);
            if (options.Subtype is not null)
            {
                mountOptions.Append(",subtype=").Append(options.Subtype);
            }

            AppendCommonOptions(mountOptions, options);
            string commFd = ((int)theirs.DangerousGetHandle()).ToString(CultureInfo.InvariantCulture);
            RunFusermount(["-o", mountOptions.ToString(), "--", target], new Dictionary<string, string> { ["_FUSE_COMMFD"] = commFd });

            return Libc.ReceiveDescriptor(ours)
                ?? throw new FuseException(FuseErrorKind.MountFailed, Errno.EIO, $"{Fusermount} mounted {target} but sent no descriptor");
        }
    }

    private static void RunFusermount(string[] arguments, Dictionary<string, string>? environment)
    {
        var start = new ProcessStartInfo(Fusermount) { RedirectStandardError = true, UseShellExecute = false };
        foreach (string argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        if (environment is not null)
        {
            foreach ((string key, string value) in environment)
            {
                start.Environment[key] = value;
            }
        }

        using Process process = Process.Start(start)
            ?? throw new FuseException(FuseErrorKind.MountFailed, Errno.ENOENT, $"cannot start {Fusermount}");
        string errors = process.StandardError.ReadToEnd();
        if (!process.WaitForExit(TimeSpan.FromSeconds(30)))
        {
            process.Kill();
            throw new FuseException(FuseErrorKind.MountFailed, Errno.ETIMEDOUT, $"{Fusermount} {string.Join(' ', arguments)} did not finish");
        }

        if (process.ExitCode != 0)
        {
            throw new FuseException(FuseErrorKind.MountFailed, Errno.EIO,
                $"{Fusermount} {string.Join(' ', arguments)} exited with {process.ExitCode}: {errors.Trim()}");
        }
    }
}
