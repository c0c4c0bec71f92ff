namespace Nydus.Actors.Tests.Support;

/// <summary>nydusd exited before it served its mount; carries the exit code and the daemon's console output.</summary>
public sealed class NydusdStartException(int exitCode, string output)
    : Exception($"nydusd exited with {exitCode} before reaching RUNNING:\n{output}")
{
    public int ExitCode { get; } = exitCode;

    public string Output { get; } = output;
}
