using System.Diagnostics;
using System.Globalization;

namespace Nydus.Bench.Report;

/// <summary>
/// One ratio of one bench run: <paramref name="Series"/> measured against <paramref name="Baseline"/> on
/// <paramref name="Measure"/> in the same run. <paramref name="Aim"/> is the issue's target for the ratio (NaN when
/// there is none); <paramref name="Method"/> says how the run was made, so that a reader of a plot can tell an
/// interleaved median from an older single pass.
/// </summary>
public sealed record RatioPoint(
    DateTimeOffset Date, string Commit, double Load, string Measure, string Series, string Baseline,
    double Ratio, double Aim, bool LowerIsBetter, string Method);

/// <summary>
/// The machine-readable history of a suite's ratios, <c>bench/history/&lt;suite&gt;.csv</c>: one line per ratio per
/// run, appended by every run, never rewritten. Plain CSV without quoting: no field may hold a comma.
/// </summary>
public static class BenchHistory
{
    private const string Header = "date,commit,load1,measure,series,baseline,ratio,aim,lower_is_better,method";

    public static string PathOf(string repoRoot, string suite) => Path.Combine(repoRoot, "bench", "history", suite + ".csv");

    public static void Append(string path, IEnumerable<RatioPoint> points)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        bool fresh = !File.Exists(path);
        using var writer = new StreamWriter(path, append: true);
        if (fresh) writer.WriteLine(Header);
        foreach (RatioPoint p in points)
        {
            string[] fields =
            [
                p.Date.UtcDateTime.ToString("yyyy-MM-ddTHH:mmZ", CultureInfo.InvariantCulture), p.Commit, Number(p.Load),
                p.Measure, p.Series, p.Baseline, Number(p.Ratio), Number(p.Aim), p.LowerIsBetter ? "1" : "0", p.Method,
            ];
            foreach (string f in fields)
            {
                if (f.Contains(',') || f.Contains('\n')) throw new ArgumentException($"history field '{f}' holds a comma or a newline");
            }

            writer.WriteLine(string.Join(',', fields));
        }
    }

    /// <summary>
    /// Appends this run's ratios to the suite's history, redraws its plots from the whole history and links them
    /// from the report, so that the results file shows the trend beside the latest table.
    /// </summary>
    public static void Record(BenchReport report, string repoRoot, string suite, IReadOnlyList<RatioPoint> points)
    {
        string path = PathOf(repoRoot, suite);
        Append(path, points);
        foreach (var (measure, file) in RatioPlots.Render(Path.Combine(repoRoot, "bench"), suite, Read(path)))
        {
            report.Plot(measure, file);
        }

        report.Note($"History of the ratios: `bench/history/{suite}.csv` (one line per ratio per run); plots below, redrawn by every run.");
    }

    public static List<RatioPoint> Read(string path)
    {
        var points = new List<RatioPoint>();
        if (!File.Exists(path)) return points;
        foreach (string line in File.ReadLines(path).Skip(1))
        {
            string[] f = line.Split(',');
            if (f.Length != 10) continue;
            points.Add(new RatioPoint(
                DateTimeOffset.Parse(f[0], CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal), f[1], Parse(f[2]),
                f[3], f[4], f[5], Parse(f[6]), Parse(f[7]), f[8] == "1", f[9]));
        }

        return points;
    }

    /// <summary>The short hash of the checked-out commit, with "+dirty" when the work tree has uncommitted changes.</summary>
    public static string CurrentCommit(string repoRoot)
    {
        string hash = Git(repoRoot, "rev-parse", "--short", "HEAD").Trim();
        bool dirty = Git(repoRoot, "status", "--porcelain", "--untracked-files=no").Trim().Length > 0;
        return hash.Length == 0 ? "unknown" : dirty ? hash + "+dirty" : hash;
    }

    /// <summary>The 1-minute load average now.</summary>
    public static double Load1() => double.Parse(File.ReadAllText("/proc/loadavg").Split(' ')[0], CultureInfo.InvariantCulture);

    private static string Git(string repoRoot, params string[] args)
    {
        try
        {
            var info = new ProcessStartInfo("git") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = repoRoot };
            foreach (string a in args) info.ArgumentList.Add(a);
            using var process = Process.Start(info)!;
            string output = process.StandardOutput.ReadToEnd();
            return process.WaitForExit(10_000) && process.ExitCode == 0 ? output : "";
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return ""; // no git on this machine: the history says "unknown"
        }
    }

    private static string Number(double v) => double.IsNaN(v) ? "" : v.ToString("0.####", CultureInfo.InvariantCulture);

    private static double Parse(string s) => s.Length == 0 ? double.NaN : double.Parse(s, CultureInfo.InvariantCulture);
}
