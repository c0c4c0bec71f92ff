using System.Diagnostics;

namespace Nydus.Actors.Tests.Support;

/// <summary>
/// A throwaway PostgreSQL cluster for a test: initdb into a fresh directory (owned by the `postgres` user, since the
/// server refuses to run as root), a server listening on a Unix socket in that directory only (no TCP), one
/// database. Disposing stops the server (immediate) and removes the directory. Needs Debian's postgresql
/// (build.sh installs it).
/// </summary>
public sealed class PostgresServer : IDisposable
{
    private static readonly TimeSpan CommandTimeout = TimeSpan.FromSeconds(120);
    private bool _started;

    private PostgresServer(string dir, string bin)
    {
        Dir = dir;
        Bin = bin;
    }

    public string Dir { get; }
    private string Bin { get; }
    private string Data => Path.Combine(Dir, "data");
    public string SocketDir => Path.Combine(Dir, "sock");
    public const string Database = "nydus";

    /// <summary>The Npgsql connection string of the database (over the Unix socket).</summary>
    public string ConnectionString => $"Host={SocketDir};Database={Database};Username=postgres";

    public static PostgresServer Start()
    {
        var bin = Directory.Exists("/usr/lib/postgresql")
            ? Directory.GetDirectories("/usr/lib/postgresql").Select(d => Path.Combine(d, "bin")).Where(d => File.Exists(Path.Combine(d, "initdb"))).Order().LastOrDefault()
            : null;
        if (bin is null) throw new InvalidOperationException("PostgreSQL is not installed (/usr/lib/postgresql/*/bin/initdb); build.sh installs Debian's postgresql");
        // Under /tmp, not the per-run TMPDIR: the postgres user must be able to reach it.
        var server = new PostgresServer(Path.Combine("/tmp", $"nydus-pg-{Guid.NewGuid().ToString("N")[..12]}"), bin);
        try
        {
            Directory.CreateDirectory(server.Data);
            Directory.CreateDirectory(server.SocketDir);
            Run("chown", "-R", "postgres", server.Dir);
            server.AsPostgres("initdb", "-D", server.Data, "-U", "postgres", "--auth=trust", "-N");
            server.AsPostgres("pg_ctl", "-D", server.Data, "-o", $"-k {server.SocketDir} -c listen_addresses=''", "-l", Path.Combine(server.Dir, "server.log"),
                "-w", "-t", "60", "start");
            server._started = true;
            server.AsPostgres("createdb", "-h", server.SocketDir, Database);
            return server;
        }
        catch
        {
            server.Dispose();
            throw;
        }
    }

    /// <summary>Runs one SQL statement with psql and returns its unaligned output.</summary>
    public string Query(string sql) => AsPostgres("psql", "-h", SocketDir, "-d", Database, "-At", "-c", sql).Trim();

    private string AsPostgres(string tool, params string[] args) => Run("runuser", ["-u", "postgres", "--", Path.Combine(Bin, tool), .. args]);

    private static string Run(string file, params string[] args)
    {
        var info = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) info.ArgumentList.Add(a);
        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(CommandTimeout))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{file} {string.Join(' ', args)} did not finish within {CommandTimeout}");
        }
        if (process.ExitCode != 0)
            throw new InvalidOperationException($"{file} {string.Join(' ', args)} failed ({process.ExitCode}): {stderr.Result.Trim()} {stdout.Result.Trim()}");
        return stdout.Result;
    }

    public void Dispose()
    {
        if (_started)
        {
            try { AsPostgres("pg_ctl", "-D", Data, "-m", "immediate", "-w", "-t", "60", "stop"); }
            catch (Exception e) when (e is InvalidOperationException or TimeoutException) { }
        }
        try { Directory.Delete(Dir, recursive: true); }
        catch (IOException) { }
    }
}
