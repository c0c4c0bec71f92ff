using System.CommandLine;
using Nydus.Host;

// nydusd: parse upstream's command line and run the daemon (or the ctl client).
// First of all, before the runtime's signal handling starts (it records the dispositions it finds and leaves an
// ignored signal ignored): SIGINT, SIGQUIT and SIGTERM inherited ignored from a script are set back to default.
SignalDispositions.UnignoreAll(2, 3, 15);
var root = NydusdCommandLine.Build(DaemonHost.RunAsync, CtlCommand.Build(), AgentHost.RunAsync);
root.Subcommands.Add(BlockCommands.BuildExport());
root.Subcommands.Add(BlockCommands.BuildNbd());
root.Subcommands.Add(VirtioFsCommand.Build());
var parsed = root.Parse(args);
if (parsed.Errors.Count > 0 && parsed.Action is not { ClearsParseErrors: true })
{
    // Say what is wrong, without burying it under the whole help text.
    foreach (var error in parsed.Errors) Console.Error.WriteLine($"nydusd: {error.Message}");
    Console.Error.WriteLine("Try 'nydusd --help' for more information.");
    return 2;
}
// Signals are the daemon's to handle (through its state machine), not the parser's.
var exitCode = await parsed.InvokeAsync(new InvocationConfiguration { ProcessTerminationTimeout = null });
// Whatever ran has finished its work (a daemon's journal confirmed its writes before it stopped; its logs are
// flushed): end the process now rather than wait for threads still running (the actor system's, a prefetch's).
Environment.Exit(exitCode);
return exitCode;
