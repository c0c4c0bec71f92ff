using Nydus.Actors.Fuse.FileSystem;
using Nydus.Actors.Fuse.Ops;
using Nydus.Actors.Fuse.Session;
using Nydus.Actors.Interop;
using Nydus.Actors.Passthrough;

namespace Nydus.Actors.Tests.Support;

/// <summary>
/// A real FUSE mount for one test: a unique temp directory holding "backing" (the shared host directory)
/// and "mnt" (the mountpoint). Disposal always detaches the mount (umount2 MNT_DETACH, checked through
/// /proc/self/mounts, never by stat()ing the mountpoint), stops the workers and deletes the directories.
/// </summary>
internal sealed class FuseTestMount : IDisposable
{
    private static readonly TimeSpan StopTimeout = TimeSpan.FromSeconds(10);

    private FuseTestMount(string root, FuseDevice device, FuseSession session, IFuseFileSystem fileSystem)
    {
        Root = root;
        Device = device;
        Session = session;
        FileSystem = fileSystem;
    }

    public string Root { get; }

    public string Backing => Path.Combine(Root, "backing");

    public string MountPoint => Path.Combine(Root, "mnt");

    public FuseDevice Device { get; }

    public FuseSession Session { get; }

    public IFuseFileSystem FileSystem { get; }

    /// <summary>Creates the directories, lets <paramref name="prepare"/> fill the backing directory, mounts and starts serving.</summary>
    public static FuseTestMount StartPassthrough(bool writable, int workers = 2, Action<string>? prepare = null,
        FuseMountOptions? mountOptions = null, Func<PassthroughFileSystem, IFuseFileSystem>? wrap = null, bool startWorkers = true, TimeSpan? cacheTimeout = null, FuseInitOptions? initOptions = null)
    {
        string root = Path.Combine(Path.GetTempPath(), "nydus-fuse-" + Guid.NewGuid().ToString("N"));
        string backing = Path.Combine(root, "backing");
        Directory.CreateDirectory(backing);
        Directory.CreateDirectory(Path.Combine(root, "mnt"));
        FuseDevice? device = null;
        PassthroughFileSystem? passthrough = null;
        try
        {
            prepare?.Invoke(backing);
            passthrough = new PassthroughFileSystem(backing, writable, cacheTimeout);
            IFuseFileSystem fileSystem = wrap is null ? passthrough : wrap(passthrough);
            FuseMountOptions options = mountOptions ?? new FuseMountOptions { ReadOnly = !writable, Source = "passthrough" };
            device = FuseMount.Mount(Path.Combine(root, "mnt"), options);
            var session = new FuseSession(device.Handle, fileSystem, new FuseSessionOptions
            {
                WorkerCount = workers,
                InitOptions = initOptions ?? (writable ? FuseInitOptions.WritablePassthrough() : FuseInitOptions.ReadOnlyImage),
            });
            var mount = new FuseTestMount(root, device, session, fileSystem);
            if (startWorkers)
            {
                session.Start();
            }

            return mount;
        }
        catch
        {
            Detach(Path.Combine(root, "mnt"));
            device?.Dispose();
            passthrough?.Dispose();
            TryDelete(root);
            throw;
        }
    }

    public string Mounted(params string[] parts) => Path.Combine([MountPoint, .. parts]);

    public string Backed(params string[] parts) => Path.Combine([Backing, .. parts]);

    public bool IsMounted => File.ReadLines("/proc/self/mounts").Any(line => line.Split(' ')[1] == MountPoint);

    public void Dispose()
    {
        Detach(MountPoint);
        Session.Stop();
        Session.Wait(StopTimeout);
        Session.Dispose();
        Device.Dispose();
        (FileSystem as IDisposable)?.Dispose();
        TryDelete(Root);
    }

    /// <summary>Lazily unmounts and waits (bounded) until /proc/self/mounts no longer lists the mountpoint.</summary>
    public static void Detach(string mountPoint)
    {
        DateTime deadline = DateTime.UtcNow + StopTimeout;
        while (File.ReadLines("/proc/self/mounts").Any(line => line.Split(' ')[1] == mountPoint))
        {
            Libc.Umount2(mountPoint, Libc.MNT_DETACH);
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"{mountPoint} is still mounted");
            }

            Thread.Sleep(10);
        }
    }

    private static void TryDelete(string root)
    {
        try
        {
            Directory.Delete(root, recursive: true);
        }
        catch (IOException)
        {
            // Leftovers under /tmp are harmless; a failing test must not fail again here.
        }
        catch (UnauthorizedAccessException)
        {
        }
    }
}
