using System.CommandLine;
using Nydus.Actors.Api;

namespace Nydus.Host;

/// <summary>
/// `nydusd ctl`: a small client for a daemon's API socket, in the spirit of upstream's nydusctl
/// (`nydusctl -S SOCK info`). Prints the response body; exits non-zero when the daemon answers with an error.
/// </summary>
public static class CtlCommand
{
    public static Command Build()
    {
        var sock = new Option<string>("--sock", "-S") { Description = "The daemon's API socket", Required = true, Recursive = true };
        var ctl = new Command("ctl", "Talk to a running daemon through its API socket");
        ctl.Options.Add(sock);

        Add(ctl, sock, "info", "Show the daemon's state (GET /api/v1/daemon)", "GET", "/api/v1/daemon");
        Add(ctl, sock, "events", "Show recent errors (GET /api/v1/daemon/events)", "GET", "/api/v1/daemon/events");
        Add(ctl, sock, "start", "Start serving (PUT /api/v1/daemon/start)", "PUT", "/api/v1/daemon/start");
        Add(ctl, sock, "exit", "Exit without unmounting (PUT /api/v1/daemon/exit)", "PUT", "/api/v1/daemon/exit");

        var level = new Argument<string>("level") { Description = "off, error, warn, info, debug or trace" };
        var setLevel = new Command("set-log-level", "Change the log level (PUT /api/v1/daemon)") { level };
        setLevel.SetAction((r, token) => SendAsync(r.GetValue(sock)!, "PUT", "/api/v1/daemon",
            System.Text.Json.JsonSerializer.Serialize(new { log_level = r.GetValue(level) }), token));
        ctl.Subcommands.Add(setLevel);

        // The node agent's API (--sock is then the agent's socket).
        Add(ctl, sock, "daemons", "List the node agent's daemons (GET /api/v1/agent/daemons)", "GET", "/api/v1/agent/daemons");
        var id = new Argument<string>("id") { Description = "The managed daemon's id" };
        var daemonArgs = new Argument<string[]>("args") { Description = "nydusd arguments (after --), without --apisock, --supervisor and --id", Arity = ArgumentArity.OneOrMore };
        var add = new Command("add-daemon", "Start a daemon under the node agent (POST /api/v1/agent/daemons)") { id, daemonArgs };
        add.SetAction((r, token) => SendAsync(r.GetValue(sock)!, "POST", "/api/v1/agent/daemons",
            System.Text.Json.JsonSerializer.Serialize(new { id = r.GetValue(id), args = r.GetValue(daemonArgs) }), token));
        ctl.Subcommands.Add(add);
        var binary = new Option<string?>("--binary") { Description = "The nydusd binary to upgrade to (default: the daemon's own)" };
        var upgrade = new Command("upgrade-daemon", "Live-upgrade a managed daemon (PUT /api/v1/agent/daemons/ID/upgrade)") { id, binary };
        upgrade.SetAction((r, token) => SendAsync(r.GetValue(sock)!, "PUT", $"/api/v1/agent/daemons/{Uri.EscapeDataString(r.GetValue(id)!)}/upgrade",
            r.GetValue(binary) is { } b ? System.Text.Json.JsonSerializer.Serialize(new { binary = Path.GetFullPath(b) }) : null, token));
        ctl.Subcommands.Add(upgrade);
        var remove = new Command("remove-daemon", "Stop a managed daemon (it unmounts) and forget it (DELETE /api/v1/agent/daemons/ID)") { id };
        remove.SetAction((r, token) => SendAsync(r.GetValue(sock)!, "DELETE", $"/api/v1/agent/daemons/{Uri.EscapeDataString(r.GetValue(id)!)}", null, token));
        ctl.Subcommands.Add(remove);
        return ctl;
    }

    private static void Add(Command ctl, Option<string> sock, string name, string description, string method, string path)
    {
        var command = new Command(name, description);
        command.SetAction((r, token) => SendAsync(r.GetValue(sock)!, method, path, null, token));
        ctl.Subcommands.Add(command);
    }

    private static async Task<int> SendAsync(string socket, string method, string path, string? body, CancellationToken token)
    {
        // Agent operations (a start, an upgrade) take a few steps on a busy host.
        using var client = new ApiClient(socket, TimeSpan.FromMinutes(3));
        try
        {
            var (status, text) = await client.SendAsync(method, path, body, token);
            if (text.Length > 0) Console.WriteLine(text);
            if (status is 200 or 201 or 204) return 0;
            Console.Error.WriteLine($"nydusd answered {status}");
            return 1;
        }
        catch (HttpRequestException e)
        {
            Console.Error.WriteLine($"cannot reach the daemon at {socket}: {e.Message}");
            return 2;
        }
    }
}
