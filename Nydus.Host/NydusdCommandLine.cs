using System.CommandLine;
using System.CommandLine.Invocation;
using System.CommandLine.Parsing;
using Nydus.Actors.Fuse.Session;

namespace Nydus.Host;

/// <summary>
/// upstream nydusd's command line (src/bin/nydusd/main.rs): the default FUSE mode and its flags, the `fuse` and
/// `singleton` subcommands, plus Nydus.NET's own --work-dir and --hocon, and the `ctl` client verb. Flags this build
/// does not serve yet are accepted by the parser but refused with "not supported yet", never ignored.
/// </summary>
public static class NydusdCommandLine
{
    // Global options (upstream: before or after the subcommand).
    private static readonly Option<string?> ApiSock = new("--apisock", "-A") { Description = "Unix socket path of the HTTP API", Recursive = true };
    private static readonly Option<string?> ConfigFile = new("--config", "-C") { Description = "JSON configuration file (RAFS config or ConfigV2)", Recursive = true };
    private static readonly Option<string?> Id = new("--id") { Description = "Daemon id: where its state lives and what a supervisor calls it", Recursive = true };
    private static readonly Option<string?> Supervisor = new("--supervisor") { Description = "Supervisor socket for fd and state handoff (requires --id)", Recursive = true };
    private static readonly Option<bool> Upgrade = new("--upgrade") { Description = "Start in upgrade mode: wait in INIT for a takeover", Recursive = true };
    private static readonly Option<string> LogLevel = new("--log-level", "-l") { Description = "trace, debug, info, warn or error", DefaultValueFactory = _ => "info", Recursive = true };
    private static readonly Option<string?> LogFile = new("--log-file", "-L") { Description = "Log file (\".log\" is added without an extension)", Recursive = true };
    private static readonly Option<int> LogRotationSize = new("--log-rotation-size") { Description = "Rotate the --log-file at this many MiB, keeping 10 rolled files (0: off)", Recursive = true };
    private static readonly Option<ulong> RlimitNofile = new("--rlimit-nofile") { Description = "RLIMIT_NOFILE to set (0: leave as is)", DefaultValueFactory = _ => 1_000_000, Recursive = true };
    private static readonly Option<string?> WorkDir = new("--work-dir") { Description = "Where the daemon's durable state lives (default: from --id under /var/lib/nydus, or a temporary dir)", Recursive = true };
    private static readonly Option<bool> JournalRepair = new("--journal-repair") { Description = "Move journal.db and snapshots.db of the work dir aside (to quarantine/<time>/) and start with an empty mount table: the way past a damaged journal", Recursive = true };
    private static readonly Option<string?> Hocon = new("--hocon") { Description = "A HOCON file layered over the shipped hocon/*.conf (e.g. PostgreSQL persistence)", Recursive = true };

    // FUSE mode options.
    private static readonly Option<string?> Mountpoint = new("--mountpoint", "-M") { Description = "Where to mount the FUSE filesystem" };
    private static readonly Option<string> FailoverPolicy = new("--failover-policy") { Description = "none, resend or flush", DefaultValueFactory = _ => "resend" };
    private static readonly Option<int> ThreadNum = new("--thread-num", "--fuse-threads") { Description = "FUSE worker threads (1-1024)", DefaultValueFactory = _ => 4 };
    private static readonly Option<bool> Writable = new("--writable") { Description = "Mount read-write (passthrough only)" };
    private static readonly Option<string?> Bootstrap = new("--bootstrap", "-B") { Description = "RAFS or EROFS image (bootstrap) to mount" };
    private static readonly Option<string?> LocalfsDir = new("--localfs-dir", "-D") { Description = "Directory of blobs (localfs backend, conflicts with --config)" };
    private static readonly Option<string?> SharedDir = new("--shared-dir", "-s") { Description = "Host directory to share through passthroughfs" };
    private static readonly Option<string?> PrefetchFiles = new("--prefetch-files") { Description = "File listing paths to prefetch, one per line (requires --bootstrap)" };
    private static readonly Option<string> VirtualMountpoint = new("--virtual-mountpoint", "-m") { Description = "Where in the FUSE mount the filesystem goes", DefaultValueFactory = _ => "/" };
    private static readonly Option<string?> DedupDb = new("--dedup-db") { Description = "Chunk deduplication database" };

    // Singleton options.
    private static readonly Option<string?> Fscache = new("--fscache", "-F") { Description = "fscache working directory" };
    private static readonly Option<string?> FscacheTag = new("--fscache-tag") { Description = "fscache tag" };
    private static readonly Option<int> FscacheThreads = new("--fscache-threads") { Description = "fscache worker threads", DefaultValueFactory = _ => 4 };

    private static readonly string[] LogLevels = ["trace", "debug", "info", "warn", "error"];

    public static RootCommand Build(Func<NydusdOptions, CancellationToken, Task<int>> runDaemon, Command ctl,
        Func<AgentOptions, CancellationToken, Task<int>>? runAgent = null)
    {
        var root = new RootCommand("nydusd: the Nydus image service daemon (Nydus.NET)");
        // Upstream's -V/--version prints its version block (clap); nydus-snapshotter parses "Git Commit:" from it.
        var version = root.Options.OfType<VersionOption>().Single();
        root.Options.Remove(version);
        root.Options.Add(new VersionOption("--version", "-V") { Action = new PrintVersionAction() });
        foreach (var o in new Option[] { ApiSock, ConfigFile, Id, Supervisor, Upgrade, LogLevel, LogFile, LogRotationSize, RlimitNofile, WorkDir, Hocon, JournalRepair })
            root.Options.Add(o);
        AddFuseOptions(root);

        var fuse = new Command("fuse", "Serve a FUSE filesystem (the default without a subcommand)");
        AddFuseOptions(fuse);
        var singleton = new Command("singleton", "Serve the blob cache manager for many images, without a FUSE mount");
        singleton.Options.Add(Fscache);
        singleton.Options.Add(FscacheTag);
        singleton.Options.Add(FscacheThreads);
        root.Subcommands.Add(fuse);
        root.Subcommands.Add(singleton);
        root.Subcommands.Add(ctl);
        if (runAgent is not null) root.Subcommands.Add(BuildAgent(runAgent));

        foreach (var command in new[] { root, fuse, singleton })
        {
            command.Validators.Add(ValidateCommon);
            var isSingleton = command == singleton;
            command.SetAction((result, token) => runDaemon(ToOptions(result, isSingleton), token));
        }
        root.Validators.Add(ValidateFuse);
        fuse.Validators.Add(ValidateFuse);
        singleton.Validators.Add(ValidateSingleton);
        return root;
    }

    /// <summary>`nydusd agent`: the node agent, a long-running supervisor of the daemons of one host.</summary>
    private static Command BuildAgent(Func<AgentOptions, CancellationToken, Task<int>> runAgent)
    {
        var stateDir = new Option<string>("--state-dir") { Description = "Where the agent keeps its journal and its daemons' sockets, work dirs and logs", Required = true };
        var sock = new Option<string>("--sock") { Description = "Unix socket of the agent's HTTP API", Required = true };
        var hotStandby = new Option<bool>("--hot-standby") { Description = "Keep a second process per daemon waiting in INIT to take over at once when it dies" };
        var agent = new Command("agent", "Run the node agent: start, watch, fail over and upgrade nydusd daemons (API on --sock)")
        {
            stateDir, sock, hotStandby,
        };
        agent.Validators.Add(r =>
        {
            var level = Value(r, LogLevel, "info");
            if (!LogLevels.Contains(level, StringComparer.OrdinalIgnoreCase))
                r.AddError($"invalid --log-level '{level}': use one of {string.Join(", ", LogLevels)}");
            if (Value(r, Hocon, null) is { } hocon && !IsReadableFile(hocon))
                r.AddError($"cannot read --hocon file {hocon}");
        });
        agent.SetAction((r, token) => runAgent(new AgentOptions(r.GetValue(stateDir)!, r.GetValue(sock)!, r.GetValue(hotStandby),
            r.GetValue(LogLevel)!.ToLowerInvariant(), r.GetValue(LogFile), r.GetValue(Hocon), r.GetValue(LogRotationSize), r.GetValue(JournalRepair)), token));
        return agent;
    }

    private static void AddFuseOptions(Command command)
    {
        foreach (var o in new Option[] { Mountpoint, FailoverPolicy, ThreadNum, Writable, Bootstrap, LocalfsDir, SharedDir, PrefetchFiles, VirtualMountpoint, DedupDb })
            command.Options.Add(o);
    }

    private static bool Given(CommandResult r, Option o) => r.GetResult(o) is { Implicit: false };

    /// <summary>An option's value inside a validator, where defaults have not been applied yet.</summary>
    private static T Value<T>(CommandResult r, Option<T> o, T fallback) =>
        r.GetResult(o) is { Implicit: false } result ? result.GetValueOrDefault<T>() : fallback;

    private static void ValidateCommon(CommandResult r)
    {
        var level = Value(r, LogLevel, "info");
        if (!LogLevels.Contains(level, StringComparer.OrdinalIgnoreCase))
            r.AddError($"invalid --log-level '{level}': use one of {string.Join(", ", LogLevels)}");
        if (Given(r, Supervisor) && !Given(r, Id))
            r.AddError("--supervisor requires --id");
        if (Value(r, LogRotationSize, 0) < 0)
            r.AddError($"invalid --log-rotation-size {Value(r, LogRotationSize, 0)}: a size in MiB, 0 to disable");
        if (Value(r, ConfigFile, null) is { } config && !IsReadableFile(config))
            r.AddError($"cannot read --config file {config}");
        if (Value(r, Hocon, null) is { } hocon && !IsReadableFile(hocon))
            r.AddError($"cannot read --hocon file {hocon}");
    }

    private static void ValidateFuse(CommandResult r)
    {
        // The root command also parses `nydusd singleton ...`; that subcommand's validator then checks.
        if (r.Children.OfType<CommandResult>().Any())
        {
            if (Given(r, Mountpoint) || Given(r, Bootstrap) || Given(r, SharedDir))
                r.AddError("FUSE options cannot be mixed with a subcommand: put them after `fuse`");
            return;
        }
        var threads = Value(r, ThreadNum, 4);
        if (threads is < 1 or > 1024)
            r.AddError($"invalid --thread-num {threads}: must be between 1 and 1024");
        var policy = Value(r, FailoverPolicy, "resend");
        if (!FuseFailoverDrain.TryParse(policy, out _))
            r.AddError($"invalid --failover-policy '{policy}': use one of {string.Join(", ", FuseFailoverDrain.PolicyNames)}");
        if (!Given(r, Mountpoint))
            r.AddError("--mountpoint is required in FUSE mode");
        if (Given(r, Bootstrap) && Given(r, SharedDir))
            r.AddError("--bootstrap and --shared-dir cannot be used together");
        if (Given(r, LocalfsDir) && Given(r, ConfigFile))
            r.AddError("--localfs-dir and --config cannot be used together");
        if (Given(r, PrefetchFiles) && !Given(r, Bootstrap))
            r.AddError("--prefetch-files requires --bootstrap");
        if (Given(r, DedupDb)) r.AddError(NotYet("--dedup-db"));
        var virtualMountpoint = Value(r, VirtualMountpoint, "/");
        if (!Nydus.Actors.Config.VirtualMountpoint.IsValid(virtualMountpoint))
            r.AddError($"invalid --virtual-mountpoint '{virtualMountpoint}': use an absolute path like / or /a/b, without '.', '..' or empty components");
        if (Given(r, Bootstrap) && !Given(r, ConfigFile) && !Given(r, LocalfsDir))
            r.AddError("--bootstrap needs --config or --localfs-dir (where its blobs are)");
        if (Given(r, Writable) && Given(r, Bootstrap))
            r.AddError("--writable applies to --shared-dir only: RAFS images are read-only");
    }

    private static void ValidateSingleton(CommandResult r)
    {
        // A singleton hands over its /dev/cachefiles fd (and its blob entries); without --fscache there is no fd.
        if (Given(r, Supervisor) && !Given(r, Fscache)) r.AddError("--supervisor for a singleton requires --fscache (the cachefiles fd is what it hands over)");
        if (Given(r, Upgrade) && !Given(r, Fscache)) r.AddError("--upgrade for a singleton requires --fscache (the cachefiles fd is what it takes over)");
        if (Given(r, Upgrade) && !Given(r, Supervisor)) r.AddError("--upgrade requires --supervisor (where the predecessor's fd is)");
        if (Given(r, FscacheTag) && !Given(r, Fscache)) r.AddError("--fscache-tag requires --fscache");
        if (Given(r, FscacheThreads) && r.GetValue(FscacheThreads) is < 1 or > 1024) r.AddError("--fscache-threads must be between 1 and 1024");
    }

    private sealed class PrintVersionAction : SynchronousCommandLineAction
    {
        public override bool ClearsParseErrors => true;

        public override int Invoke(ParseResult parseResult)
        {
            // clap prints the program name, a space, the version string and a newline.
            parseResult.InvocationConfiguration.Output.WriteLine(Nydus.Actors.Daemon.DaemonVersion.VersionBlock("nydusd"));
            return 0;
        }
    }

    private static string NotYet(string what) => $"{what} is not supported yet by this build of nydusd";

    private static bool IsReadableFile(string path)
    {
        try
        {
            using var _ = File.OpenRead(path);
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    /// <summary>The global flags every daemon kind takes (API socket, id, supervisor, logging, work dir, HOCON), for a
    /// daemon started by a subcommand that adds its own (<c>virtiofs</c>).</summary>
    public static NydusdOptions GlobalOptions(ParseResult r) => new()
    {
        Singleton = false,
        ApiSock = r.GetValue(ApiSock),
        Config = r.GetValue(ConfigFile),
        Id = r.GetValue(Id),
        Supervisor = r.GetValue(Supervisor),
        Upgrade = r.GetValue(Upgrade),
        LogLevel = r.GetValue(LogLevel)!.ToLowerInvariant(),
        LogFile = r.GetValue(LogFile),
        LogRotationSize = r.GetValue(LogRotationSize),
        WorkDir = r.GetValue(WorkDir),
        HoconFile = r.GetValue(Hocon),
        JournalRepair = r.GetValue(JournalRepair),
        RlimitNofile = r.GetValue(RlimitNofile),
    };

    private static NydusdOptions ToOptions(ParseResult r, bool singleton) => GlobalOptions(r) with
    {
        Singleton = singleton,
        Mountpoint = singleton ? null : r.GetValue(Mountpoint),
        FailoverPolicy = singleton ? "resend" : r.GetValue(FailoverPolicy)!,
        ThreadNum = singleton ? 4 : r.GetValue(ThreadNum),
        Writable = !singleton && r.GetValue(Writable),
        Bootstrap = singleton ? null : r.GetValue(Bootstrap),
        LocalfsDir = singleton ? null : r.GetValue(LocalfsDir),
        SharedDir = singleton ? null : r.GetValue(SharedDir),
        PrefetchFiles = singleton ? null : r.GetValue(PrefetchFiles),
        VirtualMountpoint = singleton ? "/" : r.GetValue(VirtualMountpoint)!,
        Fscache = singleton ? r.GetValue(Fscache) : null,
        FscacheTag = singleton ? r.GetValue(FscacheTag) : null,
        FscacheThreads = singleton ? r.GetValue(FscacheThreads) : 4,
    };
}
