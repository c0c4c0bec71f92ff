using System.CommandLine;
using System.Net;
using System.Runtime.InteropServices;
using Nydus.Actors.Block;
using Nydus.Actors.Block.Nbd;
using Nydus.Actors.Block.Verity;
using Nydus.Actors.Config;
using Nydus.Actors.Interop;
using Nydus.Actors.Rafs;
using Nydus.Actors.Storage;

namespace Nydus.Host;

/// <summary>
/// The block-device verbs: <c>nydusd export --block</c> (upstream's <c>nydus-image export --block</c>: the image as a
/// raw disk file, optionally with dm-verity) and <c>nydusd nbd</c> (the image served over NBD on a Unix socket
/// and/or TCP, and/or attached to the kernel's /dev/nbdX, until SIGTERM). Both open the image as a FUSE mount would
/// (--bootstrap with --config or --localfs-dir), so blobs come through the same backend and blob cache.
/// </summary>
public static class BlockCommands
{
    private static Option<string> Bootstrap() => new("--bootstrap", "-B") { Description = "RAFS v6 or EROFS image (metadata blob)", Required = true };

    private static Option<string?> Config() => new("--config", "-C") { Description = "Configuration file (ConfigV2 JSON/TOML or legacy): backend and cache of the blobs" };

    private static Option<string?> LocalfsDir() => new("--localfs-dir", "-D") { Description = "Directory holding the blobs (localfs backend), instead of --config" };

    public static Command BuildExport()
    {
        var block = new Option<bool>("--block") { Description = "Export as a raw block disk image (the only kind)", Required = true };
        var bootstrap = Bootstrap();
        var config = Config();
        var localfs = LocalfsDir();
        var output = new Option<string>("--output", "-O") { Description = "The disk image file to write", Required = true };
        var verity = new Option<bool>("--verity") { Description = "Append a dm-verity hash tree (sha256, 4 KiB blocks, format 1) and print the root hash" };
        var salt = new Option<string?>("--verity-salt") { Description = "Salt in hex, '-' for none (default: 32 random bytes, as veritysetup)" };
        var uuid = new Option<Guid?>("--verity-uuid") { Description = "UUID of the verity superblock (default: random)" };
        var noSuperblock = new Option<bool>("--verity-no-superblock") { Description = "No verity superblock (upstream's export; give the parameters to veritysetup yourself)" };
        var command = new Command("export", "Write an image as a raw block device file, optionally with dm-verity (nydus-image export --block)")
        {
            block, bootstrap, config, localfs, output, verity, salt, uuid, noSuperblock,
        };
        command.Validators.Add(r =>
        {
            if ((r.GetValue(config) is null) == (r.GetValue(localfs) is null)) r.AddError("give exactly one of --config and --localfs-dir");
            if (!r.GetValue(verity) && (r.GetValue(salt) is not null || r.GetValue(uuid) is not null || r.GetValue(noSuperblock)))
                r.AddError("--verity-salt, --verity-uuid and --verity-no-superblock need --verity");
            if (r.GetValue(salt) is { } s && s != "-" && (s.Length % 2 != 0 || s.Length > 512 || !s.All(Uri.IsHexDigit)))
                r.AddError("--verity-salt: hex digits (at most 256 bytes), or '-' for none");
        });
        command.SetAction(r => Run(() =>
        {
            VerityParameters? parameters = null;
            if (r.GetValue(verity))
            {
                VerityParameters defaults = VerityParameters.Random();
                string? saltText = r.GetValue(salt);
                parameters = new VerityParameters(
                    saltText is null ? defaults.Salt : saltText == "-" ? [] : Convert.FromHexString(saltText),
                    r.GetValue(uuid) ?? defaults.Uuid,
                    !r.GetValue(noSuperblock));
            }

            using BlockAddressSpace device = BlockImages.OpenFromCommandLine(r.GetValue(bootstrap)!, r.GetValue(config), r.GetValue(localfs));
            BlockExportResult result = BlockExporter.Export(device, r.GetValue(output)!, parameters);
            Console.WriteLine($"exported {result.DataBlocks} blocks ({result.DataBytes} bytes) to {result.Path}");
            if (result.RootHash is { } root)
            {
                Console.WriteLine($"dm-verity root hash: {Convert.ToHexStringLower(root)}");
                Console.WriteLine($"dm-verity options: {result.VeritySetupArguments} {Convert.ToHexStringLower(root)}");
                Console.WriteLine($"verify with: veritysetup verify {result.Path} {result.Path} {Convert.ToHexStringLower(root)} {result.VeritySetupArguments}");
            }

            return Task.FromResult(0);
        }));
        return command;
    }

    public static Command BuildNbd()
    {
        var device = new Argument<string?>("DEVICE") { Description = "/dev/nbdX: attach the kernel's NBD driver to the export (upstream's mode; needs the nbd module)", Arity = ArgumentArity.ZeroOrOne };
        var bootstrap = Bootstrap();
        var config = Config();
        var localfs = LocalfsDir();
        var socket = new Option<string?>("--nbd-socket") { Description = "Serve the NBD protocol on this Unix socket (mode 0600)" };
        var tcp = new Option<string?>("--nbd-tcp") { Description = "Serve the NBD protocol on this TCP address, HOST:PORT (port 0 picks one)" };
        var name = new Option<string>("--export-name") { Description = "The export's name (clients may also ask for the default, \"\")", DefaultValueFactory = _ => "default" };
        var threads = new Option<int>("--threads") { Description = "Requests of one connection served at once (1-1024)", DefaultValueFactory = _ => 4 };
        var command = new Command("nbd", "Serve an image as a read-only block device over the NBD protocol until SIGTERM")
        {
            device, bootstrap, config, localfs, socket, tcp, name, threads,
        };
        command.Validators.Add(r =>
        {
            if ((r.GetValue(config) is null) == (r.GetValue(localfs) is null)) r.AddError("give exactly one of --config and --localfs-dir");
            if (r.GetValue(device) is null && r.GetValue(socket) is null && r.GetValue(tcp) is null)
                r.AddError("give a DEVICE (/dev/nbdX), --nbd-socket and/or --nbd-tcp");
            if (r.GetValue(tcp) is { } t && !IPEndPoint.TryParse(t, out _)) r.AddError($"--nbd-tcp: '{t}' is not HOST:PORT (an IP address and a port)");
            // Only a value given is checked (the default is not applied while validating).
            if (r.GetResult(threads) is { Implicit: false } given && given.GetValueOrDefault<int>() is var n && n is < 1 or > 1024)
                r.AddError($"invalid --threads {n}: must be between 1 and 1024");
        });
        command.SetAction((r, token) => Run(async () =>
        {
            BlockAddressSpace space = BlockImages.OpenFromCommandLine(r.GetValue(bootstrap)!, r.GetValue(config), r.GetValue(localfs));
            using var exports = new NbdExportTable();
            var export = new NbdExport(r.GetValue(name)!, Path.GetFileName(r.GetValue(bootstrap)!), space);
            exports.TryAdd(export);
            var options = new NbdServerOptions { Threads = r.GetValue(threads) };
            using var server = new NbdServer(exports, options);
            if (r.GetValue(socket) is { } path) server.ListenUnix(Path.GetFullPath(path));
            if (r.GetValue(tcp) is { } address) server.ListenTcp(IPEndPoint.Parse(address));
            using NbdKernelDevice? kernel = r.GetValue(device) is { } nbd ? NbdKernelDevice.Attach(nbd, export, options) : null;

            var stop = new TaskCompletionSource();
            using var term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; stop.TrySetResult(); });
            using var interrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; stop.TrySetResult(); });
            Console.WriteLine($"NBD export '{r.GetValue(name)}' ({space.Size} bytes) served on {string.Join(", ", [.. server.Addresses, .. kernel is null ? Array.Empty<string>() : [kernel.DevicePath]])}");
            // Attached to a device, detaching it from outside (`nbd-client -d`) also ends the service, as upstream.
            Task detached = kernel is null ? Task.Delay(Timeout.Infinite, token) : kernel.Detached;
            await Task.WhenAny(stop.Task, detached).WaitAsync(token);
            if (!stop.Task.IsCompleted && kernel is not null)
            {
                // Detached from outside (`nbd-client -d`, or the kernel gave up on the socket): say so; an error is exit 1.
                Errno result = await kernel.Detached;
                Console.WriteLine($"NBD device {kernel.DevicePath} was detached ({result})");
                if (result != Errno.Success) return 1;
            }

            Console.WriteLine("NBD server stopping");
            return 0;
        }));
        return command;
    }

    /// <summary>Bad input (config, image, missing blob, unwritable output) is one clear line and exit code 1.</summary>
    private static async Task<int> Run(Func<Task<int>> action)
    {
        try
        {
            return await action();
        }
        catch (Exception e) when (e is ConfigException or RafsException or StorageException or IOException
                                      or UnauthorizedAccessException or ArgumentException)
        {
            Console.Error.WriteLine($"nydusd: {e.Message}");
            return 1;
        }
    }
}
