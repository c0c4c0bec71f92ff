using Akka.Event;

namespace Nydus.Actors.Daemon;

/// <summary>
/// Akka's "stdout logger" (HOCON akka.stdout-logger-class), which Akka uses while its real loggers start and after
/// they stop, pointed at Serilog instead of the console: a daemon told to log to --log-file writes nothing to stdout
/// or stderr, not even during actor system start-up and shutdown.
/// </summary>
public sealed class SerilogMinimalLogger : MinimalLogger
{
    protected override void Log(object message)
    {
        if (message is not LogEvent e) return;
        var logger = Serilog.Log.ForContext(Serilog.Core.Constants.SourceContextPropertyName, e.LogSource);
        switch (e.LogLevel())
        {
            case LogLevel.ErrorLevel: logger.Error(e.Cause, "{Message}", e.Message); break;
            case LogLevel.WarningLevel: logger.Warning(e.Cause, "{Message}", e.Message); break;
            case LogLevel.InfoLevel: logger.Information("{Message}", e.Message); break;
            default: logger.Debug("{Message}", e.Message); break;
        }
    }
}
