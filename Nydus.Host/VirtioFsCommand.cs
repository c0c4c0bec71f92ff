using System.CommandLine;
using System.CommandLine.Parsing;
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
/// <c>--localfs-dir</c>) or a host directory (<c>--shared-dir</c>) served to a VM over vhost-user-fs. It runs as a
/// daemon (<see cref="DaemonHost"/>, <see cref="VirtioFsServiceSetup"/>) with the same state machine, API
/// (<c>--apisock</c>), journal and mount table as a FUSE daemon: the file system is the daemon's VFS with the command
/// line's instance at <c>--virtual-mountpoint</c> and the API's mounts beside it; the guest mounts it with
/// <c>mount -t virtiofs TAG DIR</c>. With <c>--blobfs</c> the image's files are served instead, by a plain process
/// without the daemon (no API).
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
        var command = new Command("virtiofs", "Serve an image or directory to a VM over vhost-user-fs (virtio-fs), as a daemon with the HTTP API (--apisock)")
        {
            sock, bootstrap, config, localfs, shared, writable, virtualMountpoint, queues, blobfs,
        };
        command.Validators.Add(r =>
        {
            bool image = r.GetValue(bootstrap) is not null, directory = r.GetValue(shared) is not null;
            // The global flags are the root command's: looked up by name.
            bool Given(string name) => r.GetResult(name) is OptionResult { Implicit: false };
            if (image && directory) r.AddError("give at most one of --bootstrap and --shared-dir");
            if (!image && !directory && !r.GetValue(blobfs) && !Given("--apisock"))
                r.AddError("give --bootstrap or --shared-dir, or --apisock to mount images through the API");
            if (image && (r.GetValue(config) is null) == (r.GetValue(localfs) is null)) r.AddError("--bootstrap needs exactly one of --config and --localfs-dir");
            if (r.GetValue(blobfs) && !image) r.AddError("--blobfs serves an image: give --bootstrap");
            if (r.GetValue(blobfs) && new[] { "--apisock", "--id", "--supervisor", "--upgrade" }.FirstOrDefault(Given) is { } daemonFlag)
                r.AddError($"{daemonFlag} is not supported with --blobfs yet: blobfs runs without the daemon and its API");
            else if (Given("--upgrade")) r.AddError($"--upgrade is not supported by nydusd virtiofs: {VirtioFsServiceActor.NoHandoff}");
            if (r.GetValue(writable) && !directory) r.AddError("--writable applies to --shared-dir only: images are read-only");
            // Defaults are not applied yet inside a validator: only given values are checked.
            if (r.GetResult(queues) is { Implicit: false } q && q.GetValueOrDefault<int>() is < 1 or > 64)
                r.AddError($"invalid --thread-num {q.GetValueOrDefault<int>()}: must be between 1 and 64");
            if (r.GetResult(virtualMountpoint) is { Implicit: false } m && !VirtualMountpoint.IsValid(m.GetValueOrDefault<string>() ?? ""))
                r.AddError("invalid --virtual-mountpoint: an absolute path like / or /a/b");
        });
        command.SetAction(async (r, token) =>
        {
            if (r.GetValue(blobfs))
            {
                Log.Logger = NydusdLogging.Create(new LoggingLevelSwitch(LevelOf(r.GetValue<string>("--log-level"))), r.GetValue<string>("--log-file"), 0);
                return await ServeBlobsAsync(r.GetValue(sock)!, r.GetValue(bootstrap)!, r.GetValue(config), r.GetValue(localfs), r.GetValue(queues), token);
            }

            // A daemon like a FUSE one, with the vhost-user-fs socket in place of the kernel mount.
            var global = NydusdCommandLine.GlobalOptions(r);
            return await DaemonHost.RunAsync(global with
            {
                VirtioFsSocket = r.GetValue(sock),
                Bootstrap = r.GetValue(bootstrap),
                Config = r.GetValue(config) ?? global.Config,
                LocalfsDir = r.GetValue(localfs),
                SharedDir = r.GetValue(shared),
                Writable = r.GetValue(writable),
                VirtualMountpoint = r.GetValue(virtualMountpoint)!,
                ThreadNum = r.GetValue(queues),
            }, token);
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

    private static LogEventLevel LevelOf(string? level) => level?.ToLowerInvariant() switch
    {
        "trace" => LogEventLevel.Verbose,
        "debug" => LogEventLevel.Debug,
        "warn" => LogEventLevel.Warning,
        "error" => LogEventLevel.Error,
        _ => LogEventLevel.Information,
    };
}
