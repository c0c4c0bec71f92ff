using Akka.Actor;
using Nydus.Actors.Config;
using Nydus.Actors.Daemon;
using Nydus.Actors.Daemon.Mounts;
using Nydus.Actors.Fuse.Session;
using Serilog;

namespace Nydus.Host;

/// <summary>
/// Upstream's start order for a FUSE daemon (create_fuse_daemon): open the filesystem, mount the kernel side, then
/// hand both to the daemon's service so that Mount and Start can follow. Anything wrong with the image, the config
/// or the mountpoint is reported before the kernel mount is made, and a failure after it unmounts again.
/// </summary>
public sealed class FuseServiceSetup
{
    private FuseServiceSetup(Props serviceProps, MountedBackend backend, string mountPoint, Action undo)
    {
        MountPoint = mountPoint;
        ServiceProps = serviceProps;
        Backend = backend;
        Undo = undo;
    }

    /// <summary>Where the kernel mount is.</summary>
    public string MountPoint { get; }

    /// <summary>What the API lists for the mounted filesystem.</summary>
    public MountedBackend Backend { get; }

    /// <summary>The daemon's service child: the FUSE session on the mounted descriptor.</summary>
    public Props ServiceProps { get; }

    /// <summary>Unmounts and releases everything, for when the daemon never got to own it.</summary>
    public Action Undo { get; }

    public static FuseServiceSetup Prepare(NydusdOptions options)
    {
        var mountpoint = Path.GetFullPath(options.Mountpoint!);
        if (!Directory.Exists(mountpoint))
            throw new IOException($"mountpoint {mountpoint} is not an existing directory");

        var (instance, redactedConfig) = OpenFilesystem(options);
        FuseDevice? device = null;
        FuseSession? session = null;
        try
        {
            device = FuseMount.Mount(mountpoint, new FuseMountOptions
            {
                Source = instance.Type == FsBackendType.Rafs ? "rafs" : "passthroughfs",
                ReadOnly = !options.Writable,
                AllowOther = true,
            });
            Log.Information("Mounted {Kind} at {MountPoint}", instance.Type.ToDisplayString(), mountpoint);
            session = new FuseSession(device.Handle, instance.FileSystem, new FuseSessionOptions
            {
                WorkerCount = options.ThreadNum,
                InitOptions = instance.InitOptions,
            });
        }
        catch
        {
            session?.Dispose();
            if (device is not null)
            {
                FuseMount.Unmount(mountpoint);
                device.Dispose();
            }
            instance.Dispose();
            throw;
        }

        var props = FuseServiceActor.Props(session, mountpoint, session, device, instance);
        if (instance.Metrics is { } metrics) MountMetricsRegistry.Shared.Register("/", metrics);
        var backend = new MountedBackend(instance.Type.ToDisplayString(), "/", DateTimeOffset.UtcNow, redactedConfig);
        return new FuseServiceSetup(props, backend, mountpoint, () =>
        {
            try { FuseMount.Unmount(mountpoint); } catch (Exception e) { Log.Warning("Unmounting {MountPoint} failed: {Error}", mountpoint, e.Message); }
            session.Dispose();
            device.Dispose();
            instance.Dispose();
        });
    }

    private static (FilesystemInstance Instance, string? RedactedConfig) OpenFilesystem(NydusdOptions options)
    {
        if (options.SharedDir is { } shared)
            return (FilesystemInstance.OpenPassthrough(Path.GetFullPath(shared), options.Writable), null);

        var bootstrap = Path.GetFullPath(options.Bootstrap!);
        var imagePullAuth = Environment.GetEnvironmentVariable("IMAGE_PULL_AUTH");
        var (config, source) = options.Config is { } file
            ? (NydusConfigLoader.LoadFile(file, imagePullAuth), file)
            : (NydusConfigLoader.Parse(NydusConfigLoader.CreateLocalFsDirConfigText(Path.GetFullPath(options.LocalfsDir!)), "--localfs-dir", imagePullAuth), "--localfs-dir");
        var prefetchFiles = options.PrefetchFiles is { } list ? PrefetchList.ParseFile(list) : null;
        return (FilesystemInstance.OpenRafs(bootstrap, config, source, prefetchFiles), ConfigJson.SerializeWithoutSecrets(config));
    }
}
