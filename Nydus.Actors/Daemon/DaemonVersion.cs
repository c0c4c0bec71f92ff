using System.Reflection;

namespace Nydus.Actors.Daemon;

/// <summary>
/// What this build calls itself: the API's "version" block and <c>nydusd -V</c>. Git commit and build time are
/// stamped into the assembly at build time (BuildInfo.targets); "unknown" when the build had no git checkout, as
/// upstream reports it.
/// </summary>
public static class DaemonVersion
{
    private static readonly Assembly Self = typeof(DaemonVersion).Assembly;

    public static readonly string PackageVersion =
        Self.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion
        ?? Self.GetName().Version?.ToString() ?? "0.0.0";

    public static readonly string GitCommit = Metadata("GitCommit");

    public static readonly string BuildTime = Metadata("BuildTime");

    public static string Profile =>
#if DEBUG
        "debug";
#else
        "release";
#endif

    public static string Runtime => System.Runtime.InteropServices.RuntimeInformation.FrameworkDescription;

    /// <summary>
    /// Upstream's version block (src/lib.rs get_build_time_info, printed by clap after the program name): nydus-snapshotter
    /// reads the commit out of it with <c>Git Commit:\s*(.+)</c> to decide whether a running daemon needs an upgrade,
    /// so the labels and the tab after each colon are upstream's. The last line is the runtime (upstream: rustc).
    /// </summary>
    public static string VersionBlock(string program) =>
        $"{program} \rVersion: \t{PackageVersion}\nGit Commit: \t{GitCommit}\nBuild Time: \t{BuildTime}\nProfile: \t{Profile}\n.NET: \t\t{Runtime}\n";

    private static string Metadata(string key) =>
        Self.GetCustomAttributes<AssemblyMetadataAttribute>().FirstOrDefault(a => a.Key == key)?.Value is { Length: > 0 } value
            ? value
            : "unknown";
}
