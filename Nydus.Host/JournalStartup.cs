using Nydus.Actors.Daemon;
using Nydus.Actors.Daemon.Persistence;
using Serilog;

namespace Nydus.Host;

/// <summary>
/// The durable-state step of a start, shared by the daemon and the node agent and done before the actor system
/// exists: <c>--journal-repair</c> moves the old files aside, the SQLite files are checked (or created owner-only),
/// and the key that seals mount configs is loaded (or made). A damaged or unwritable file ends the start here, in
/// one attempt, naming the file, the cause and what to do (<see cref="JournalDamagedException"/>,
/// <see cref="JournalUnavailableException"/>), before any FUSE mount exists.
/// </summary>
public static class JournalStartup
{
    /// <param name="sealsConfigs">Whether this journal holds mount configs, and so needs the key that seals them.</param>
    public static void Prepare(JournalFiles files, Akka.Configuration.Config config, bool repair, bool sealsConfigs = true)
    {
        var databases = DaemonHocon.WorkDirSqliteFiles(config, files.WorkDir).ToList();
        if (repair)
        {
            var moved = files.Quarantine();
            if (moved.Count == 0)
                Log.Information("--journal-repair: no journal files in {WorkDir} to move aside", files.WorkDir);
            else
                Log.Warning("--journal-repair: moved {Files} into quarantine (kept for inspection, e.g. with sqlite3); "
                            + "this start begins with an empty mount table", string.Join(", ", moved));
            if (databases.Count < 2)
                Log.Warning("--journal-repair repairs the SQLite files of the work dir only; a journal configured elsewhere (--hocon) is left as it is");
        }
        files.CheckOrCreateDatabases(databases);
        if (sealsConfigs) files.LoadOrCreateKey();
    }
}
