using Akka.Configuration;

namespace Nydus.Actors.Daemon;

/// <summary>
/// Builds a daemon's actor system configuration: the shipped HOCON files (hocon/ next to the binary), with the
/// values that depend on this run (SQLite files under the work dir, log level) below a user's own file.
/// </summary>
public static class DaemonHocon
{
    public static readonly string[] ShippedFiles = ["nydusd.conf", "dispatchers.conf", "persistence.conf"];

    /// <param name="hoconDir">Folder holding the shipped files.</param>
    /// <param name="workDir">The daemon's work dir; the SQLite journal and snapshot store live here.</param>
    /// <param name="userFile">A --hocon file layered on top of everything, or null.</param>
    /// <param name="akkaLogLevel">Akka's level name (DEBUG, INFO, WARNING, ERROR).</param>
    /// <param name="logToFileOnly">The process logs to --log-file only: Akka's own console logger (used while its
    /// loggers start and stop) must stay silent too.</param>
    /// <param name="journalKeyFile">The key that seals mount configs in the journal (see JournalSeal); null: not sealed.</param>
    public static Akka.Configuration.Config Load(string hoconDir, string workDir, string? userFile, string akkaLogLevel,
        bool logToFileOnly = false, string? journalKeyFile = null)
    {
        var config = ConfigurationFactory.Empty;
        foreach (var name in ShippedFiles)
        {
            var path = Path.Combine(hoconDir, name);
            if (!File.Exists(path))
                throw new FileNotFoundException($"HOCON file {path} is missing (it ships next to nydusd in hocon/)", path);
            config = config.WithFallback(ConfigurationFactory.ParseString(File.ReadAllText(path)));
        }

        // The SQL plugin's own defaults (plugin classes, table names) sit below ours.
        config = config.WithFallback(Akka.Persistence.Sql.SqlPersistence.DefaultConfiguration);

        var perRun = ConfigurationFactory.ParseString($$"""
            akka.loglevel = {{akkaLogLevel}}
            {{(logToFileOnly ? "akka.stdout-logger-class = \"Nydus.Actors.Daemon.SerilogMinimalLogger, Nydus.Actors\"" : "")}}
            akka.persistence.journal.sql.connection-string = "{{SqliteConnectionString(Path.Combine(workDir, "journal.db"))}}"
            akka.persistence.snapshot-store.sql.connection-string = "{{SqliteConnectionString(Path.Combine(workDir, "snapshots.db"))}}"
            nydus.journal.key-file = "{{Escape(journalKeyFile ?? "")}}"
            """);
        config = perRun.WithFallback(config);

        if (userFile is not null)
        {
            if (!File.Exists(userFile)) throw new FileNotFoundException($"HOCON file {userFile} does not exist", userFile);
            config = ConfigurationFactory.ParseString(File.ReadAllText(userFile)).WithFallback(config);
        }
        return config;
    }

    /// <summary>The environment variable naming a HOCON file to layer over the shipped ones (when --hocon is absent).</summary>
    public const string EnvironmentVariable = "NYDUSD_HOCON";

    /// <summary>The system-wide HOCON file, used when neither --hocon nor <see cref="EnvironmentVariable"/> names one.</summary>
    public const string SystemFile = "/etc/nydus/nydusd.conf";

    /// <summary>
    /// Which user HOCON file applies, first found wins: --hocon, then $NYDUSD_HOCON, then /etc/nydus/nydusd.conf if it
    /// exists (what a systemd unit or a host's configuration management would use). A file named explicitly (flag or
    /// variable) must exist; the system file is optional. Returns null when none applies.
    /// </summary>
    public static string? ResolveUserFile(string? flag, string? environmentValue, string systemFile = SystemFile)
    {
        if (!string.IsNullOrEmpty(flag)) return flag;
        if (!string.IsNullOrEmpty(environmentValue))
        {
            if (!File.Exists(environmentValue))
                throw new FileNotFoundException($"HOCON file {environmentValue} (from ${EnvironmentVariable}) does not exist", environmentValue);
            return environmentValue;
        }
        return File.Exists(systemFile) ? systemFile : null;
    }


    /// <summary>The SQLite files of the work dir that <paramref name="config"/> really uses (a --hocon file may put
    /// the journal, the snapshot store or both elsewhere, e.g. on PostgreSQL).</summary>
    public static IEnumerable<string> WorkDirSqliteFiles(Akka.Configuration.Config config, string workDir)
    {
        foreach (var (key, name) in new[] { ("akka.persistence.journal.sql", "journal.db"), ("akka.persistence.snapshot-store.sql", "snapshots.db") })
        {
            var file = Path.Combine(workDir, name);
            if (config.GetString(key + ".provider-name", "").StartsWith("SQLite", StringComparison.OrdinalIgnoreCase)
                && config.GetString(key + ".connection-string", "") == ConnectionString(file))
                yield return file;
        }
    }

    private static string ConnectionString(string file) => "Data Source=" + file;

    private static string SqliteConnectionString(string file) => Escape(ConnectionString(file));

    private static string Escape(string value) => value.Replace("\\", "\\\\").Replace("\"", "\\\"");
}
