using Akka.Actor;
using Nydus.Actors.Config;
using Nydus.Actors.Daemon;
using Nydus.Actors.Daemon.Mounts;
using Nydus.Actors.Vfs;

namespace Nydus.Host;

/// <summary>
/// What a filesystem daemon is started with, whatever its transport (<see cref="FuseServiceSetup"/>: a kernel FUSE
/// mount; <see cref="VirtioFsServiceSetup"/>: a vhost-user-fs socket): the VFS the transport serves, the command
/// line's instance opened for it, and the daemon's service child that drives the transport through the state machine.
/// The host then composes every kind the same way: the daemon actor gets the service and the VFS, the command line's
/// instance is mounted through the daemon like an API mount (one mount path), Mount and Start follow.
/// </summary>
public abstract class FsServiceSetup
{
    protected FsServiceSetup(Props serviceProps, VirtualFileSystem vfs, MountFilesystem? commandLine, Action undo)
    {
        ServiceProps = serviceProps;
        Vfs = vfs;
        CommandLine = commandLine;
        Undo = undo;
    }

    /// <summary>The virtual filesystem the transport serves: the filesystem service attaches instances to it.</summary>
    public VirtualFileSystem Vfs { get; }

    /// <summary>The command line's instance, opened (so its errors came before the transport was set up) but not
    /// attached: the host mounts it through the daemon like an API mount, which attaches and records it. Null without
    /// <c>--bootstrap</c> or <c>--shared-dir</c> (an empty root, filled through the API).</summary>
    public MountFilesystem? CommandLine { get; }

    /// <summary>The daemon's service child: the FUSE session or the vhost-user-fs server.</summary>
    public Props ServiceProps { get; }

    /// <summary>Takes back and releases everything, for when the daemon never got to own it.</summary>
    public Action Undo { get; }

    /// <summary>Opens what the command line names through the same mount command as the API's (so that the
    /// instance's actor can open it again); null when the command line names nothing.</summary>
    /// <param name="servedMountpoint">The kernel mountpoint the VFS is served at (passthrough sources may not contain
    /// it); null for virtio-fs, whose mount is in the guest.</param>
    protected static (OpenedInstance Opened, FsBackendMountCmd Command)? OpenCommandLineInstance(NydusdOptions options, ErrorEventLog events,
        string? servedMountpoint, Nydus.Actors.Storage.Cache.BlobCacheRegistry caches)
    {
        FsBackendMountCmd command;
        string configSource;
        if (options.SharedDir is { } shared)
        {
            command = new FsBackendMountCmd
            {
                FsType = FsBackendType.PassthroughFs,
                Source = Path.GetFullPath(shared),
                Config = options.Writable ? """{"writable":true}""" : "",
                Mountpoint = options.VirtualMountpoint,
            };
            configSource = "--shared-dir";
        }
        else if (options.Bootstrap is { } bootstrap)
        {
            command = new FsBackendMountCmd
            {
                FsType = FsBackendType.Rafs,
                Source = Path.GetFullPath(bootstrap),
                Config = options.Config is { } file
                    ? NydusConfigLoader.ReadConfigText(file)
                    : NydusConfigLoader.CreateLocalFsDirConfigText(Path.GetFullPath(options.LocalfsDir!)),
                Mountpoint = options.VirtualMountpoint,
                PrefetchFiles = options.PrefetchFiles is { } list ? PrefetchList.ParseFile(list) : null,
            };
            // Config errors name the file the user gave, as before the API existed.
            configSource = options.Config ?? "--localfs-dir";
        }
        else return null;

        return (MountCommands.Open(command, caches, configSource, events, servedMountpoint: servedMountpoint), command);
    }

    /// <summary>The command line's instance as the mount the host sends through the daemon.</summary>
    protected static MountFilesystem? AsMount((OpenedInstance Opened, FsBackendMountCmd Command)? opened) =>
        opened is { } o ? new MountFilesystem(o.Command) { Opened = o.Opened } : null;
}
