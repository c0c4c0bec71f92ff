using System.Reflection;

namespace Nydus.Actors.Daemon;

/// <summary>What this build calls itself in the API's version block.</summary>
public static class DaemonVersion
{
    public static readonly string PackageVersion =
        typeof(DaemonVersion).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion
        ?? typeof(DaemonVersion).Assembly.GetName().Version?.ToString() ?? "0.0.0";

    public static string Profile =>
#if DEBUG
        "debug";
#else
        "release";
#endif

    public static string Runtime => System.Runtime.InteropServices.RuntimeInformation.FrameworkDescription;
}
