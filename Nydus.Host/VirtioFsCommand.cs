using System.CommandLine;
using System.Runtime.InteropServices;
using Nydus.Actors.Blobfs;
using Nydus.Actors.Block;
using Nydus.Actors.Config;
using Nydus.Actors.Daemon;
using Nydus.Actors.Daemon.Mounts;
using Nydus.Actors.Fuse.Ops;
using Nydus.Actors.Rafs;
using Nydus.Actors.Storage;
using Nydus.Actors.VirtioFs;
using Nydus.Actors.Vfs;
using Serilog;
using Serilog.Core;
using Serilog.Events;

namespace Nydus.Host;

/// <summary>
/// <c>nydusd virtiofs --sock PATH</c> (upstream's virtiofs mode): the image (<c>--bootstrap</c> with <c>--config</c> or
/// <c>--localfs-dir</c>) or a host directory (<c>--shared-dir</c>) served to a VM over vhost-user-fs, until SIGTERM.
/// The file system is the daemon's VFS with the instance at <c>--virtual-mountpoint</c>, as a FUSE daemon's is; the
/// guest mounts it with <c>mount -t virtiofs TAG DIR</c>.
/// </summary>
public static class VirtioFsCommand
{
    public static Command Build()
    {
        var sock = new Option<string>("--sock") { Description = "vhost-user socket to listen on for the VMM (qemu -chardev socket,path=...)", Required = true };
        var bootstrap = new Option<string?>("--bootstrap", "-B") { Description = "RAFS or EROFS image (bootstrap) to serve" };
        var config = new Option<string?>("--config", "-C") { Description = "Configuration file (backend and cache of the blobs)" };
        var localfs = new Option<string?>("--localfs-dir", "-D") { Description = "Directory holding the blobs (localfs backend), instead of --config" };
        var shared = new Option<string?>("--shared-dir", "-s") { Description = "Host directory to share through passthroughfs (read-only unless --writable)" };
        var writable = new Option<bool>("--writable") { Description = "Share the --shared-dir directory read-write (the guest's changes reach the host directory)" };
        var virtualMountpoint = new Option<string>("--virtual-mountpoint", "-m") { Description = "Where in the guest's mount the filesystem goes", DefaultValueFactory = _ => "/" };
        var blobfs = new Option<bool>("--blobfs")
        {
            Description = "Serve the image's bootstrap and blobs as files (image.boot, one per blob id, devices) for the guest's own EROFS, instead of its tree",
        };
        var queues = new Option<int>("--thread-num") { Description = "Request queues offered to the VMM, each served by its own thread (1-64)", DefaultValueFactory = _ => 4 };
        var command = new Command("virtiofs", "Serve an image or directory to a VM over vhost-user-fs (virtio-fs) until SIGTERM")
        {
            sock, bootstrap, config, localfs, shared, writable, virtualMountpoint, queues, blobfs,
        };
        command.Validators.Add(r =>
        {
            bool image = r.GetValue(bootstrap) is not null, directory = r.GetValue(shared) is not null;
            if (image == directory) r.AddError("give exactly one of --bootstrap and --shared-dir");
            if (image && (r.GetValue(config) is null) == (r.GetValue(localfs) is null)) r.AddError("--bootstrap needs exactly one of --config and --localfs-dir");
            if (r.GetValue(blobfs) && !image) r.AddError("--blobfs serves an image: give --bootstrap");
            if (r.GetValue(writable) && !directory) r.AddError("--writable applies to --shared-dir only: images are read-only");
            // Defaults are not applied yet inside a validator: only given values are checked.
            if (r.GetResult(queues) is { Implicit: false } q && q.GetValueOrDefault<int>() is < 1 or > 64)
                r.AddError($"invalid --thread-num {q.GetValueOrDefault<int>()}: must be between 1 and 64");
            if (r.GetResult(virtualMountpoint) is { Implicit: false } m && !VirtualMountpoint.IsValid(m.GetValueOrDefault<string>() ?? ""))
                r.AddError("invalid --virtual-mountpoint: an absolute path like / or /a/b");
        });
        command.SetAction(async (r, token) =>
        {
            Log.Logger = NydusdLogging.Create(new LoggingLevelSwitch(LevelOf(r.GetValue<string>("--log-level"))), r.GetValue<string>("--log-file"), 0);
            if (r.GetValue(blobfs)) return await ServeBlobsAsync(r.GetValue(sock)!, r.GetValue(bootstrap)!, r.GetValue(config), r.GetValue(localfs), r.GetValue(queues), token);
            OpenedInstance opened;
            try
            {
                opened = MountCommands.Open(MountCommandOf(r.GetValue(bootstrap), r.GetValue(config), r.GetValue(localfs), r.GetValue(shared),
                    r.GetValue(writable), r.GetValue(virtualMountpoint)!), r.GetValue(config) ?? (r.GetValue(shared) is null ? "--localfs-dir" : "--shared-dir"), new ErrorEventLog());
            }
            catch (Exception e) when (e is ConfigException or RafsException or StorageException or IOException or UnauthorizedAccessException)
            {
                Console.Error.WriteLine($"nydusd: {e.Message}");
                return 1;
            }

            using var vfs = new VirtualFileSystem();
            vfs.Mount(r.GetValue(virtualMountpoint)!, opened.Instance.FileSystem, opened.Instance);
            VhostUserFsServer server;
            try
            {
                server = new VhostUserFsServer(r.GetValue(sock)!, vfs, opened.Instance.InitOptions, r.GetValue(queues));
            }
            catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException or UnauthorizedAccessException)
            {
                Console.Error.WriteLine($"nydusd: cannot listen on {r.GetValue(sock)}: {e.Message}");
                return 1;
            }

            using (server)
            {
                await ServeUntilSignalAsync(server, opened.Instance.Type.ToDisplayString(), token);
            }

            await Log.CloseAndFlushAsync();
            return 0;
        });
        return command;
    }

    /// <summary>blobfs: the image's bootstrap and blobs as files (<see cref="BlobFileSystem"/>), for the guest's EROFS.</summary>
    private static async Task<int> ServeBlobsAsync(string sock, string bootstrap, string? config, string? localfs, int queues, CancellationToken token)
    {
        BlobFileSystem blobs;
        try
        {
            blobs = new BlobFileSystem(BlockImages.OpenFromCommandLine(bootstrap, config, localfs), bootstrap);
        }
        catch (Exception e) when (e is ConfigException or RafsException or StorageException or IOException or UnauthorizedAccessException)
        {
            Console.Error.WriteLine($"nydusd: {e.Message}");
            return 1;
        }

        using (blobs)
        {
            VhostUserFsServer server;
            try
            {
                server = new VhostUserFsServer(sock, blobs, FuseInitOptions.ReadOnlyImage, queues);
            }
            catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException or UnauthorizedAccessException)
            {
                Console.Error.WriteLine($"nydusd: cannot listen on {sock}: {e.Message}");
                return 1;
            }

            using (server)
            {
                foreach (var (name, size) in blobs.Files) Log.Information("blobfs: {Name} ({Size} bytes)", name, size);
                await ServeUntilSignalAsync(server, "blobfs", token);
            }
        }

        await Log.CloseAndFlushAsync();
        return 0;
    }

    private static async Task ServeUntilSignalAsync(VhostUserFsServer server, string kind, CancellationToken token)
    {
        server.Start();
        var stop = new TaskCompletionSource();
        using var term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; stop.TrySetResult(); });
        using var interrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; stop.TrySetResult(); });
        Log.Information("virtio-fs: {Kind} served on vhost-user socket {Socket}", kind, server.SocketPath);
        Console.WriteLine($"virtio-fs served on {server.SocketPath}");
        await stop.Task.WaitAsync(token);
        Log.Information("virtio-fs: stopping");
    }

    private static FsBackendMountCmd MountCommandOf(string? bootstrap, string? config, string? localfs, string? shared, bool writable, string mountpoint) =>
        shared is not null
            ? new FsBackendMountCmd
            {
                // The passthrough config's "writable" is what a FUSE daemon's --writable sets too (FuseServiceSetup).
                FsType = FsBackendType.PassthroughFs, Source = Path.GetFullPath(shared), Config = writable ? """{"writable":true}""" : "", Mountpoint = mountpoint,
            }
            : new FsBackendMountCmd
            {
                FsType = FsBackendType.Rafs,
                Source = Path.GetFullPath(bootstrap!),
                Config = config is not null ? NydusConfigLoader.ReadConfigText(config) : NydusConfigLoader.CreateLocalFsDirConfigText(Path.GetFullPath(localfs!)),
                Mountpoint = mountpoint,
            };

    private static LogEventLevel LevelOf(string? level) => level?.ToLowerInvariant() switch
    {
        "trace" => LogEventLevel.Verbose,
        "debug" => LogEventLevel.Debug,
        "warn" => LogEventLevel.Warning,
        "error" => LogEventLevel.Error,
        _ => LogEventLevel.Information,
    };
}
