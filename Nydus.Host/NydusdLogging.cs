using Serilog;
using Serilog.Core;
using Serilog.Events;

namespace Nydus.Host;

/// <summary>
/// Logging as upstream nydusd sets it up (src/logger.rs, flexi_logger): with <c>--log-file</c> every line goes to
/// that file only (nothing to stderr: nydus-snapshotter hands a daemon its own stdout/stderr and reads the file),
/// without it to stderr. Lines are upstream's: <c>[2024-05-01 08:09:10.123456 +00:00] INFO message</c>, and for the
/// other levels <c>[...] WARN [origin:0] message</c>, where upstream prints source file and line and we print the
/// logging class (line 0: unknown). <c>--log-rotation-size N</c> (MiB, 0 off) rolls the file when it reaches N MiB
/// and keeps the 10 newest rolled files, as upstream's Cleanup::KeepCompressedFiles(10) (ours are not compressed).
/// Log files are created 0600 whatever the umask (<see cref="OwnerOnlyRollingFile"/>).
/// </summary>
public static class NydusdLogging
{
    /// <summary>How many rolled files are kept besides the one being written (upstream keeps 10).</summary>
    public const int RolledFilesKept = 10;

    private const string Template =
        "[{Timestamp:yyyy-MM-dd HH:mm:ss.ffffff zzz}] {UpstreamLevel} {Origin}{Message:lj}{NewLine}{Exception}";

    /// <summary>The file upstream writes for <c>--log-file</c>: ".log" is added to a name without an extension.</summary>
    public static string LogFilePath(string logFile) => Path.HasExtension(logFile) ? logFile : logFile + ".log";

    public static Logger Create(LoggingLevelSwitch levelSwitch, string? logFile, int rotationSizeMiB)
    {
        var configuration = new LoggerConfiguration()
            .MinimumLevel.ControlledBy(levelSwitch)
            .Enrich.FromLogContext()
            // Input quoted in a log line (a mountpoint with a newline) cannot forge another line.
            .Enrich.With<ControlCharacterEscaper>()
            .Enrich.With<UpstreamLineEnricher>();
        if (logFile is null)
            return configuration.WriteTo.Console(outputTemplate: Template, standardErrorFromLevel: LogEventLevel.Verbose,
                formatProvider: System.Globalization.CultureInfo.InvariantCulture).CreateLogger();

        var path = Path.GetFullPath(LogFilePath(logFile));
        // A log dir nydusd makes is the owner's alone, as its state dirs; an existing one is left as it is.
        var directory = Path.GetDirectoryName(path)!;
        if (!Directory.Exists(directory)) Directory.CreateDirectory(directory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        var file = new OwnerOnlyRollingFile(path, rotationSizeMiB > 0 ? rotationSizeMiB * 1024L * 1024L : null, current =>
            new LoggerConfiguration().MinimumLevel.Verbose().WriteTo.File(current, outputTemplate: Template,
                    formatProvider: System.Globalization.CultureInfo.InvariantCulture,
                    // Upstream never stops writing a file (Serilog's default would stop at 1 GiB); rolling is done above.
                    fileSizeLimitBytes: null,
                    // Several processes may share one file (an upgrade's old and new daemon, with the same arguments).
                    shared: true)
                .CreateLogger());
        return configuration.WriteTo.Sink(file).CreateLogger();
    }

    /// <summary>Upstream's level names (Rust's log crate) and the origin shown for every level but INFO.</summary>
    private sealed class UpstreamLineEnricher : ILogEventEnricher
    {
        private static readonly LogEventProperty[] Levels =
        [
            new("UpstreamLevel", new ScalarValue("TRACE")),
            new("UpstreamLevel", new ScalarValue("DEBUG")),
            new("UpstreamLevel", new ScalarValue("INFO")),
            new("UpstreamLevel", new ScalarValue("WARN")),
            new("UpstreamLevel", new ScalarValue("ERROR")),
            // Rust has no FATAL: a fatal start error is an ERROR line there.
            new("UpstreamLevel", new ScalarValue("ERROR")),
        ];
        private static readonly LogEventProperty NoOrigin = new("Origin", new ScalarValue(""));

        public void Enrich(LogEvent logEvent, ILogEventPropertyFactory factory)
        {
            logEvent.AddPropertyIfAbsent(Levels[(int)logEvent.Level]);
            if (logEvent.Level == LogEventLevel.Information)
            {
                logEvent.AddPropertyIfAbsent(NoOrigin);
                return;
            }
            var origin = "<unnamed>";
            if (logEvent.Properties.TryGetValue(Constants.SourceContextPropertyName, out var context)
                && context is ScalarValue { Value: string name })
                origin = name[(name.LastIndexOf('.') + 1)..];
            logEvent.AddPropertyIfAbsent(factory.CreateProperty("Origin", $"[{origin}:0] "));
        }
    }
}
