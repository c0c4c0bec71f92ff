using System.Security.Cryptography;
using Microsoft.Data.Sqlite;

namespace Nydus.Actors.Daemon.Persistence;

/// <summary>
/// The files of a daemon's (or the node agent's) durable state in its work dir: the SQLite journal and snapshot
/// store and the key that seals mount configs (<see cref="JournalSeal"/>). Checked once before the actor system
/// starts, so that a damaged file is reported in one attempt, by name, with what to do, instead of surfacing as the
/// persistence plugin's retries; created owner-only (dir 0700, files 0600) because the journal holds mount commands.
/// </summary>
public sealed class JournalFiles
{
    /// <summary>The SQLite header of every database file.</summary>
    private static readonly byte[] SqliteMagic = "SQLite format 3\0"u8.ToArray();

    /// <summary>Stamped into every database this build creates ('NYDS'): a file without it was made elsewhere.</summary>
    public const int ApplicationId = 0x4E594453;

    public const UnixFileMode DirMode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;
    public const UnixFileMode FileMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;

    public JournalFiles(string workDir)
    {
        WorkDir = Path.GetFullPath(workDir);
    }

    public string WorkDir { get; }
    public string JournalPath => Path.Combine(WorkDir, "journal.db");
    public string SnapshotsPath => Path.Combine(WorkDir, "snapshots.db");
    public string KeyPath => Path.Combine(WorkDir, "journal.key");
    public string QuarantineRoot => Path.Combine(WorkDir, "quarantine");

    /// <summary>What an operator reads after a damage report.</summary>
    public string RepairHint =>
        $"to start anyway, run once with --journal-repair: it moves the damaged files to {QuarantineRoot}/<time>/ (kept for inspection) "
        + "and starts with an empty mount table, so mount your images again afterwards";

    /// <summary>Creates the work dir owner-only (0700, parents too) if it does not exist; an existing dir is left as
    /// it is (it may be shared), only the state files in it are made owner-only.</summary>
    public static string CreateDirectory(string dir)
    {
        var full = Path.GetFullPath(dir);
        if (!Directory.Exists(full)) Directory.CreateDirectory(full, DirMode);
        return full;
    }

    /// <summary>
    /// Checks each database file that exists and creates those that do not (owner-only, stamped). Throws
    /// <see cref="JournalDamagedException"/> for a file that is damaged (empty, not SQLite, truncated, failing
    /// SQLite's quick_check) and <see cref="JournalUnavailableException"/> when a file cannot be created or opened
    /// (a full disk, a read-only dir, permissions).
    /// </summary>
    /// <param name="databases">The database files in use (a --hocon file may put either elsewhere).</param>
    public void CheckOrCreateDatabases(IEnumerable<string> databases)
    {
        foreach (var file in databases)
        {
            if (File.Exists(file)) Check(file);
            else Create(file);
        }
    }

    /// <summary>Moves every database file (and SQLite's -wal/-shm/-journal beside it) to a new
    /// <c>quarantine/&lt;UTC time&gt;/</c> dir; returns the files moved.</summary>
    public IReadOnlyList<string> Quarantine()
    {
        var present = new[] { JournalPath, SnapshotsPath }
            .SelectMany(db => new[] { db, db + "-wal", db + "-shm", db + "-journal" })
            .Where(File.Exists)
            .ToList();
        if (present.Count == 0) return [];
        Directory.CreateDirectory(QuarantineRoot, DirMode);
        var target = Path.Combine(QuarantineRoot, DateTime.UtcNow.ToString("yyyyMMdd'T'HHmmss'Z'"));
        for (int n = 2; Directory.Exists(target); n++) target = Path.Combine(QuarantineRoot, $"{DateTime.UtcNow:yyyyMMdd'T'HHmmss'Z'}-{n}");
        Directory.CreateDirectory(target, DirMode);
        var moved = new List<string>();
        foreach (var file in present)
        {
            var to = Path.Combine(target, Path.GetFileName(file));
            File.Move(file, to);
            moved.Add(to);
        }
        return moved;
    }

    /// <summary>The key that seals mount configs in the journal: 32 random bytes in <see cref="KeyPath"/>, mode 0600,
    /// made at the first start. A key readable by others is made owner-only again.</summary>
    public byte[] LoadOrCreateKey()
    {
        if (!File.Exists(KeyPath))
        {
            var fresh = RandomNumberGenerator.GetBytes(JournalSeal.KeySize);
            try
            {
                using var stream = new FileStream(KeyPath, new FileStreamOptions
                {
                    Mode = System.IO.FileMode.CreateNew,
                    Access = FileAccess.Write,
                    UnixCreateMode = FileMode,
                });
                stream.Write(fresh);
                stream.Flush(flushToDisk: true);
                return fresh;
            }
            catch (IOException) when (File.Exists(KeyPath) && new FileInfo(KeyPath).Length == JournalSeal.KeySize)
            {
                // Another process sharing this work dir (a successor) made it first: use theirs.
            }
            catch (IOException e)
            {
                TryDelete(KeyPath);
                throw new JournalUnavailableException(KeyPath, $"cannot create the journal key: {e.Message}", e);
            }
        }
        TightenMode(KeyPath);
        var key = File.ReadAllBytes(KeyPath);
        if (key.Length != JournalSeal.KeySize)
            throw new JournalDamagedException(KeyPath, $"the journal key has {key.Length} bytes, not {JournalSeal.KeySize}",
                "it seals the mount configs in the journal: restore it from a backup, or move it, journal.db and snapshots.db aside (--journal-repair moves the databases) and mount your images again");
        return key;
    }

    private void Check(string file)
    {
        TightenMode(file);
        var length = new FileInfo(file).Length;
        if (length == 0)
            throw Damaged(file, "the file is empty (0 bytes); a journal this daemon created is never empty, so it was truncated");
        var header = new byte[100];
        using (var stream = File.OpenRead(file))
        {
            int read = stream.ReadAtLeast(header, header.Length, throwOnEndOfStream: false);
            if (read < header.Length || !header.AsSpan(0, 16).SequenceEqual(SqliteMagic))
                throw Damaged(file, $"it is not a SQLite database (its first {Math.Min(read, 16)} bytes are not the SQLite header)");
        }
        // The header's page count is valid when its "version valid for" matches the change counter; a write-ahead log
        // beside the file may hold pages the file does not have yet.
        int pageSize = header[16] << 8 | header[17];
        if (pageSize == 1) pageSize = 65536;
        uint changeCounter = ReadUInt32(header, 24), pages = ReadUInt32(header, 28), validFor = ReadUInt32(header, 92);
        if (pages > 0 && validFor == changeCounter && !File.Exists(file + "-wal") && (long)pages * pageSize > length)
            throw Damaged(file, $"it is truncated: its header counts {pages} pages of {pageSize} bytes, the file has {length} bytes");

        string verdict;
        try
        {
            using var connection = Open(file, SqliteOpenMode.ReadWrite);
            using var check = connection.CreateCommand();
            check.CommandText = "PRAGMA quick_check";
            verdict = check.ExecuteScalar() as string ?? "no answer";
        }
        catch (SqliteException e) when (e.SqliteErrorCode is 11 or 26)
        {
            // SQLITE_CORRUPT, SQLITE_NOTADB.
            throw Damaged(file, e.Message);
        }
        catch (SqliteException e)
        {
            throw new JournalUnavailableException(file, $"cannot open {file}: {e.Message}", e);
        }
        if (verdict != "ok") throw Damaged(file, $"SQLite's quick_check found damage: {verdict}");
    }

    private static void Create(string file)
    {
        try
        {
            // Owner-only from the first byte: SQLite gives its -wal/-shm/-journal files the mode of the database.
            using (new FileStream(file, new FileStreamOptions { Mode = System.IO.FileMode.CreateNew, Access = FileAccess.Write, UnixCreateMode = FileMode }))
            {
            }
            using var connection = Open(file, SqliteOpenMode.ReadWrite);
            using var stamp = connection.CreateCommand();
            // Writes the header page: from here on the file is never legitimately empty.
            stamp.CommandText = $"PRAGMA application_id = {ApplicationId}; CREATE TABLE IF NOT EXISTS nydus_created (at TEXT); DROP TABLE nydus_created;";
            stamp.ExecuteNonQuery();
        }
        catch (Exception e) when (e is SqliteException or IOException or UnauthorizedAccessException)
        {
            TryDelete(file);
            var cause = JournalFailures.Describe(e);
            throw new JournalUnavailableException(file, $"cannot create {file}: {cause}", e);
        }
    }

    private static SqliteConnection Open(string file, SqliteOpenMode mode)
    {
        var connection = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = file, Mode = mode, Pooling = false }.ToString());
        connection.Open();
        return connection;
    }

    private JournalDamagedException Damaged(string file, string cause) => new(file, cause, RepairHint);

    private static void TightenMode(string file)
    {
        var mode = File.GetUnixFileMode(file);
        if ((mode & ~FileMode) != 0) File.SetUnixFileMode(file, mode & FileMode);
    }

    private static uint ReadUInt32(byte[] b, int at) => (uint)(b[at] << 24 | b[at + 1] << 16 | b[at + 2] << 8 | b[at + 3]);

    private static void TryDelete(string file)
    {
        try { File.Delete(file); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}

/// <summary>A state file is damaged: the daemon refuses to start on it rather than treat it as empty.</summary>
public sealed class JournalDamagedException(string file, string cause, string hint)
    : IOException($"journal file {file} is damaged: {cause}; {hint}")
{
    public string File { get; } = file;
}

/// <summary>A state file cannot be created or written (a full disk, a read-only dir, permissions).</summary>
public sealed class JournalUnavailableException(string file, string message, Exception? inner = null) : IOException(message, inner)
{
    public string File { get; } = file;
}

/// <summary>Names the cause of a persistence failure for an operator, and tells a full disk from the rest.</summary>
public static class JournalFailures
{
    private const int SqliteFull = 13;
    private const int SqliteReadOnly = 8;
    private const int Enospc = 28;

    /// <summary>The disk (or the database's quota) is full: the API answers 507.</summary>
    public static bool IsDiskFull(Exception e) => Chain(e).Any(x =>
        x is SqliteException { SqliteErrorCode: SqliteFull }
        || (x is IOException io && (io.HResult & 0xFFFF) == Enospc)
        || x.Message.Contains("disk is full", StringComparison.OrdinalIgnoreCase)
        || x.Message.Contains("No space left", StringComparison.OrdinalIgnoreCase));

    /// <summary>The innermost message worth showing, with the kind spelled out for the common ones.</summary>
    public static string Describe(Exception e)
    {
        var all = Chain(e).ToList();
        if (IsDiskFull(e)) return "the disk is full (" + all[^1].Message + ")";
        if (all.Any(x => x is SqliteException { SqliteErrorCode: SqliteReadOnly }))
            return "the work dir is read-only (" + all[^1].Message + ")";
        return all[^1].Message;
    }

    private static IEnumerable<Exception> Chain(Exception e)
    {
        for (Exception? x = e; x is not null; x = x.InnerException)
        {
            if (x is AggregateException { InnerExceptions.Count: > 0 } agg)
            {
                foreach (var inner in agg.InnerExceptions.SelectMany(Chain)) yield return inner;
                yield break;
            }
            yield return x;
        }
    }
}
