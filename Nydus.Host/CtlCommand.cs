using System.CommandLine;
using System.Text.Json;
using Nydus.Actors.Api;

namespace Nydus.Host;

/// <summary>
/// `nydusd ctl`: upstream's nydusctl (src/bin/nydusctl) against a daemon's API socket: `info` (human, or the JSON with
/// -r), `set log-level V`, `metrics backend|cache|fsstats [-I N]`, `mount -s -c -m -t`, `umount -m`, with nydusctl's
/// output (<see cref="NydusctlFormat"/>) and its "Error: Request failed. ..." line and exit code 1 for an API error.
/// Our additions: `metrics files|inflight` (the JSON), `events`, `start`, `exit`, the block service's
/// `block-export`, `block-exports`, `block-unexport`, and the node agent's verbs.
/// </summary>
public static class CtlCommand
{
    public static Command Build()
    {
        var sock = new Option<string>("--sock", "-S") { Description = "The daemon's API socket", Required = true, Recursive = true };
        var raw = new Option<bool>("--raw", "-r") { Description = "Print the API's JSON instead of the human-readable form", Recursive = true };
        var ctl = new Command("ctl", "Query and configure a running daemon through its API socket (upstream's nydusctl)");
        ctl.Options.Add(sock);
        ctl.Options.Add(raw);

        var info = new Command("info", "Show the daemon's version, state and instances (GET /api/v1/daemon)");
        info.SetAction((r, token) => GetAsync(r.GetValue(sock)!, "/api/v1/daemon", r.GetValue(raw), NydusctlFormat.Info, token));
        ctl.Subcommands.Add(info);

        // nydusctl: `set log-level <VALUE>` (the only configurable KIND).
        var kind = new Argument<string>("KIND") { Description = "The parameter to configure: log-level" };
        kind.AcceptOnlyFromAmong("log-level");
        var value = new Argument<string>("VALUE") { Description = "log-level: trace, debug, info, warn, error (or off)" };
        var set = new Command("set", "Configure the daemon (PUT /api/v1/daemon)") { kind, value };
        set.SetAction((r, token) => SendAsync(r.GetValue(sock)!, "PUT", "/api/v1/daemon",
            JsonSerializer.Serialize(new { log_level = r.GetValue(value) }), token, printBody: false));
        ctl.Subcommands.Add(set);

        ctl.Subcommands.Add(BuildMetrics(sock, raw));

        var source = new Option<string>("--source", "-s") { Description = "The bootstrap (rafs) or directory (passthrough_fs)", Required = true };
        var config = new Option<string>("--config", "-c") { Description = "Configuration file of the new instance (sent as its text)", Required = true };
        var mountpoint = new Option<string>("--mountpoint", "-m") { Description = "Virtual mountpoint of the instance", Required = true };
        var type = new Option<string>("--type", "-t") { Description = "rafs or passthrough_fs", Required = true };
        type.AcceptOnlyFromAmong("rafs", "passthrough_fs");
        var mount = new Command("mount", "Mount a new filesystem instance (POST /api/v1/mount)") { source, config, mountpoint, type };
        mount.SetAction(async (r, token) =>
        {
            string configText;
            try
            {
                configText = await File.ReadAllTextAsync(r.GetValue(config)!, token);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                Console.Error.WriteLine($"Error: failed to read mount config {r.GetValue(config)}: {e.Message}");
                return 1;
            }
            var body = JsonSerializer.Serialize(new { source = r.GetValue(source), fs_type = r.GetValue(type), config = configText });
            return await SendAsync(r.GetValue(sock)!, "POST", MountPath(r.GetValue(mountpoint)!), body, token, printBody: false);
        });
        ctl.Subcommands.Add(mount);

        var umountPoint = new Option<string>("--mountpoint", "-m") { Description = "Virtual mountpoint of the instance", Required = true };
        var umount = new Command("umount", "Unmount a filesystem instance (DELETE /api/v1/mount)") { umountPoint };
        umount.SetAction((r, token) => SendAsync(r.GetValue(sock)!, "DELETE", MountPath(r.GetValue(umountPoint)!), null, token, printBody: false));
        ctl.Subcommands.Add(umount);

        Add(ctl, sock, "events", "Show recent errors (GET /api/v1/daemon/events)", "GET", "/api/v1/daemon/events");
        Add(ctl, sock, "start", "Start serving (PUT /api/v1/daemon/start)", "PUT", "/api/v1/daemon/start");
        Add(ctl, sock, "exit", "Exit without unmounting (PUT /api/v1/daemon/exit)", "PUT", "/api/v1/daemon/exit");

        var level = new Argument<string>("level") { Description = "off, error, warn, info, debug or trace" };
        var setLevel = new Command("set-log-level", "Change the log level (PUT /api/v1/daemon; same as `set log-level`)") { level };
        setLevel.SetAction((r, token) => SendAsync(r.GetValue(sock)!, "PUT", "/api/v1/daemon",
            JsonSerializer.Serialize(new { log_level = r.GetValue(level) }), token));
        ctl.Subcommands.Add(setLevel);

        ctl.Subcommands.Add(BuildBlockExport(sock));
        Add(ctl, sock, "block-exports", "List the block service's NBD exports (GET /api/v1/block/exports)", "GET", "/api/v1/block/exports");
        var exportName = new Argument<string>("name") { Description = "The export's name" };
        var unexport = new Command("block-unexport", "Stop serving an NBD export (DELETE /api/v1/block/exports?name=NAME)") { exportName };
        unexport.SetAction((r, token) => SendAsync(r.GetValue(sock)!, "DELETE",
            "/api/v1/block/exports?name=" + Uri.EscapeDataString(r.GetValue(exportName)!), null, token, printBody: false));
        ctl.Subcommands.Add(unexport);

        // The node agent's API (--sock is then the agent's socket).
        Add(ctl, sock, "daemons", "List the node agent's daemons (GET /api/v1/agent/daemons)", "GET", "/api/v1/agent/daemons");
        var id = new Argument<string>("id") { Description = "The managed daemon's id" };
        var daemonArgs = new Argument<string[]>("args") { Description = "nydusd arguments (after --), without --apisock, --supervisor and --id", Arity = ArgumentArity.OneOrMore };
        var add = new Command("add-daemon", "Start a daemon under the node agent (POST /api/v1/agent/daemons)") { id, daemonArgs };
        add.SetAction((r, token) => SendAsync(r.GetValue(sock)!, "POST", "/api/v1/agent/daemons",
            JsonSerializer.Serialize(new { id = r.GetValue(id), args = r.GetValue(daemonArgs) }), token));
        ctl.Subcommands.Add(add);
        var binary = new Option<string?>("--binary") { Description = "The nydusd binary to upgrade to (default: the daemon's own)" };
        var upgrade = new Command("upgrade-daemon", "Live-upgrade a managed daemon (PUT /api/v1/agent/daemons/ID/upgrade)") { id, binary };
        upgrade.SetAction((r, token) => SendAsync(r.GetValue(sock)!, "PUT", $"/api/v1/agent/daemons/{Uri.EscapeDataString(r.GetValue(id)!)}/upgrade",
            r.GetValue(binary) is { } b ? JsonSerializer.Serialize(new { binary = Path.GetFullPath(b) }) : null, token));
        ctl.Subcommands.Add(upgrade);
        var remove = new Command("remove-daemon", "Stop a managed daemon (it unmounts) and forget it (DELETE /api/v1/agent/daemons/ID)") { id };
        remove.SetAction((r, token) => SendAsync(r.GetValue(sock)!, "DELETE", $"/api/v1/agent/daemons/{Uri.EscapeDataString(r.GetValue(id)!)}", null, token));
        ctl.Subcommands.Add(remove);
        var fleet = new Command("fleet", "The fleet of node agents (nydus.agent.cluster)");
        var fleetStatus = new Command("status", "What runs where: every agent's daemons, with the age of each entry (GET /api/v1/fleet)");
        fleetStatus.SetAction((r, token) => GetAsync(r.GetValue(sock)!, "/api/v1/fleet", r.GetValue(raw), FleetFormat.Status, token));
        fleet.Subcommands.Add(fleetStatus);
        var fleetEvents = new Command("events", "What this agent saw happen in the fleet: members, the rollout's steps (GET /api/v1/fleet/events)");
        fleetEvents.SetAction((r, token) => GetAsync(r.GetValue(sock)!, "/api/v1/fleet/events", r.GetValue(raw), FleetFormat.Events, token));
        fleet.Subcommands.Add(fleetEvents);
        AddRollout(fleet, sock, raw);
        ctl.Subcommands.Add(fleet);
        return ctl;
    }

    /// <summary>`fleet upgrade --binary PATH [--batch N] [--max-unavailable M] [--pause-on-failure] [--skip-older-agents]`,
    /// `fleet rollout` (status), `fleet pause|resume|abort`: the fleet's rolling upgrade (/api/v1/fleet/rollout).</summary>
    private static void AddRollout(Command fleet, Option<string> sock, Option<bool> raw)
    {
        var binary = new Option<string>("--binary") { Description = "The nydusd binary to roll out: the same absolute path on every host", Required = true };
        var batch = new Option<int>("--batch") { Description = "Daemons upgraded at once (default 1)", DefaultValueFactory = _ => 1 };
        var maxUnavailable = new Option<int>("--max-unavailable")
        {
            Description = "A batch starts only while the fleet's unhealthy daemons plus the batch are at most this (default: the batch)",
        };
        var pauseOnFailure = new Option<bool>("--pause-on-failure") { Description = "Pause at the first failed daemon (otherwise it is recorded failed, keeps its old binary, and the rollout goes on)" };
        var skipOlder = new Option<bool>("--skip-older-agents") { Description = "Skip the daemons of agents that do not take rollout requests (otherwise the rollout pauses before them)" };
        var upgrade = new Command("upgrade", "Start a rolling upgrade of every daemon on every agent (POST /api/v1/fleet/rollout)")
        {
            binary, batch, maxUnavailable, pauseOnFailure, skipOlder,
        };
        upgrade.SetAction(async (r, token) =>
        {
            var body = JsonSerializer.Serialize(new
            {
                binary = Path.GetFullPath(r.GetValue(binary)!),
                batch = r.GetValue(batch),
                max_unavailable = r.GetValue(maxUnavailable),
                pause_on_failure = r.GetValue(pauseOnFailure),
                skip_older_agents = r.GetValue(skipOlder),
            });
            var ok = await RequestAsync(r.GetValue(sock)!, "POST", "/api/v1/fleet/rollout", body, token);
            if (ok.ExitCode != 0) return ok.ExitCode;
            Print(ok.Body, r.GetValue(raw), FleetFormat.Rollout);
            return 0;
        });
        fleet.Subcommands.Add(upgrade);
        var status = new Command("rollout", "The current (or last) rolling upgrade and each daemon's part in it (GET /api/v1/fleet/rollout)");
        status.SetAction((r, token) => GetAsync(r.GetValue(sock)!, "/api/v1/fleet/rollout", r.GetValue(raw), FleetFormat.Rollout, token));
        fleet.Subcommands.Add(status);
        foreach (var (action, what) in new[] { ("pause", "Pause the rollout (the batch in progress finishes)"), ("resume", "Resume a paused rollout (failed daemons are tried again)"),
                     ("abort", "End the rollout (the batch in progress finishes; the rest keep their binary)") })
        {
            var command = new Command(action, $"{what} (PUT /api/v1/fleet/rollout/{action})");
            command.SetAction(async (r, token) =>
            {
                var ok = await RequestAsync(r.GetValue(sock)!, "PUT", "/api/v1/fleet/rollout/" + action, null, token);
                if (ok.ExitCode != 0) return ok.ExitCode;
                Print(ok.Body, r.GetValue(raw), FleetFormat.Rollout);
                return 0;
            });
            fleet.Subcommands.Add(command);
        }
    }

    /// <summary>`metrics CATEGORY [-I N]`: nydusctl's backend, cache and fsstats; files and inflight print the JSON.</summary>
    private static Command BuildMetrics(Option<string> sock, Option<bool> raw)
    {
        var category = new Argument<string>("category") { Description = "backend, cache, fsstats, files or inflight" };
        category.AcceptOnlyFromAmong("backend", "cache", "fsstats", "files", "inflight");
        var interval = new Option<uint?>("--interval", "-I") { Description = "backend: print the change every N seconds until interrupted" };
        var id = new Option<string?>("--id") { Description = "The instance's virtual mountpoint (default: the only one)" };
        var metrics = new Command("metrics", "Show runtime metrics of the backend, cache and filesystem") { category, interval, id };
        metrics.SetAction(async (r, token) =>
        {
            var socket = r.GetValue(sock)!;
            var query = r.GetValue(id) is { } mp ? "?id=" + Uri.EscapeDataString(mp) : "";
            return r.GetValue(category) switch
            {
                "backend" when r.GetValue(interval) is { } seconds => await BackendLoopAsync(socket, "/api/v1/metrics/backend" + query, seconds, token),
                "backend" => await GetAsync(socket, "/api/v1/metrics/backend" + query, r.GetValue(raw), NydusctlFormat.Backend, token),
                "cache" => await GetAsync(socket, "/api/v1/metrics/blobcache" + query, r.GetValue(raw), NydusctlFormat.Cache, token),
                "fsstats" => await GetAsync(socket, "/api/v1/metrics" + query, r.GetValue(raw), NydusctlFormat.FsStats, token),
                "files" => await GetAsync(socket, "/api/v1/metrics/files" + query, raw: true, null, token),
                _ => await GetAsync(socket, "/api/v1/metrics/inflight", raw: true, null, token),
            };
        });
        return metrics;
    }

    /// <summary>`block-export NAME (--source B --config FILE | --mountpoint MP) (--nbd-socket P | --nbd-tcp IP:PORT)`.</summary>
    private static Command BuildBlockExport(Option<string> sock)
    {
        var name = new Argument<string>("name") { Description = "The export's name, as NBD clients ask for it" };
        var source = new Option<string?>("--source", "-s") { Description = "The image (RAFS v6 or EROFS bootstrap)" };
        var config = new Option<string?>("--config", "-c") { Description = "Configuration file of the image's blobs (sent as its text)" };
        var mountpoint = new Option<string?>("--mountpoint", "-m") { Description = "Export the image mounted at this virtual mountpoint instead" };
        var socket = new Option<string?>("--nbd-socket") { Description = "Serve on this Unix socket (mode 0600)" };
        var tcp = new Option<string?>("--nbd-tcp") { Description = "Serve on this TCP address, IP:PORT (port 0 picks one)" };
        var command = new Command("block-export", "Serve an image as a read-only NBD export (POST /api/v1/block/exports)")
        {
            name, source, config, mountpoint, socket, tcp,
        };
        command.Validators.Add(r =>
        {
            if ((r.GetValue(source) is null) == (r.GetValue(mountpoint) is null)) r.AddError("give exactly one of --source (with --config) and --mountpoint");
            if ((r.GetValue(source) is null) != (r.GetValue(config) is null)) r.AddError("--source and --config go together");
            if ((r.GetValue(socket) is null) == (r.GetValue(tcp) is null)) r.AddError("give exactly one of --nbd-socket and --nbd-tcp");
        });
        command.SetAction(async (r, token) =>
        {
            string? configText = null;
            if (r.GetValue(config) is { } file)
            {
                try
                {
                    configText = await File.ReadAllTextAsync(file, token);
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    Console.Error.WriteLine($"Error: failed to read export config {file}: {e.Message}");
                    return 1;
                }
            }
            var body = JsonSerializer.Serialize(new
            {
                name = r.GetValue(name),
                source = r.GetValue(source) is { } s ? Path.GetFullPath(s) : null,
                config = configText,
                mountpoint = r.GetValue(mountpoint),
                nbd_socket = r.GetValue(socket) is { } p ? Path.GetFullPath(p) : null,
                nbd_tcp = r.GetValue(tcp),
            }, new JsonSerializerOptions { DefaultIgnoreCondition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull });
            return await SendAsync(r.GetValue(sock)!, "POST", "/api/v1/block/exports", body, token);
        });
        return command;
    }

    private static string MountPath(string mountpoint) => "/api/v1/mount?mountpoint=" + Uri.EscapeDataString(mountpoint);

    private static void Add(Command ctl, Option<string> sock, string name, string description, string method, string path)
    {
        var command = new Command(name, description);
        command.SetAction((r, token) => SendAsync(r.GetValue(sock)!, method, path, null, token));
        ctl.Subcommands.Add(command);
    }

    /// <summary>A GET printed raw (the body as received) or through nydusctl's human format.</summary>
    private static async Task<int> GetAsync(string socket, string path, bool raw, Func<JsonElement, string>? human, CancellationToken token)
    {
        var ok = await RequestAsync(socket, "GET", path, null, token);
        if (ok.ExitCode != 0) return ok.ExitCode;
        Print(ok.Body, raw, human);
        return 0;
    }

    private static void Print(string body, bool raw, Func<JsonElement, string>? human)
    {
        if (raw || human is null)
        {
            if (body.Length > 0) Console.WriteLine(body);
            return;
        }
        using var doc = JsonDocument.Parse(body);
        Console.Write(human(doc.RootElement));
    }

    /// <summary>nydusctl's `metrics backend -I N`: prints the change over every interval until interrupted.</summary>
    private static async Task<int> BackendLoopAsync(string socket, string path, uint seconds, CancellationToken token)
    {
        var ok = await RequestAsync(socket, "GET", path, null, token);
        if (ok.ExitCode != 0) return ok.ExitCode;
        var last = JsonDocument.Parse(ok.Body);
        try
        {
            while (true)
            {
                await Task.Delay(TimeSpan.FromSeconds(seconds), token);
                var current = await RequestAsync(socket, "GET", path, null, token);
                if (current.ExitCode != 0) return current.ExitCode;
                var doc = JsonDocument.Parse(current.Body);
                Console.Write(NydusctlFormat.BackendDelta(last.RootElement, doc.RootElement, seconds));
                last.Dispose();
                last = doc;
            }
        }
        catch (OperationCanceledException)
        {
            return 0;
        }
        finally
        {
            last.Dispose();
        }
    }

    private static async Task<int> SendAsync(string socket, string method, string path, string? body, CancellationToken token,
        bool printBody = true)
    {
        var ok = await RequestAsync(socket, method, path, body, token);
        if (ok.ExitCode != 0) return ok.ExitCode;
        if (printBody && ok.Body.Length > 0) Console.WriteLine(ok.Body);
        return 0;
    }

    /// <param name="ExitCode">0 for an answer below 400; else the failure was printed: 1 for an API error (as
    /// nydusctl), 2 when the socket cannot be reached.</param>
    private readonly record struct Answer(string Body, int ExitCode);

    private static async Task<Answer> RequestAsync(string socket, string method, string path, string? body, CancellationToken token)
    {
        // Agent operations (a start, an upgrade) take a few steps on a busy host.
        using var client = new ApiClient(socket, TimeSpan.FromMinutes(3));
        try
        {
            var (status, text) = await client.SendAsync(method, path, body, token);
            if (status < 400) return new Answer(text, 0);
            // nydusctl: anyhow's "Error: " and the body's Debug form.
            Console.Error.WriteLine(NydusctlFormat.RequestFailed(text));
            return new Answer(text, 1);
        }
        catch (HttpRequestException e)
        {
            Console.Error.WriteLine($"Error: cannot reach the daemon at {socket}: {e.Message}"
                                    + (e.InnerException is { } inner ? $" ({inner.Message})" : ""));
            return new Answer("", 2);
        }
    }
}
