using System.Diagnostics;
using Nydus.Actors.Tests.Support;
using Xunit;

namespace Nydus.Actors.Tests.Host;

/// <summary>The unit files in dist/systemd, checked by systemd's own `systemd-analyze verify`.</summary>
public sealed class SystemdUnitTests : IDisposable
{
    private readonly TempDir _dir = new("units");

    private static string UnitDir => Path.Combine(ImageFixtures.RepositoryRoot, "dist", "systemd");

    /// <summary>Copies a unit with ExecStart pointing at the nydusd just built (verify checks the binary exists).</summary>
    private string Copy(string unit, string? asName = null)
    {
        var text = File.ReadAllText(Path.Combine(UnitDir, unit)).Replace("/usr/local/bin/nydusd", NydusdProcess.BinaryPath);
        var path = _dir.Combine(asName ?? unit);
        File.WriteAllText(path, text);
        return path;
    }

    private static (int Code, string Output) Verify(params string[] units)
    {
        var info = new ProcessStartInfo("systemd-analyze") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in (string[])["verify", "--man=no", .. units]) info.ArgumentList.Add(a);
        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromSeconds(60)))
        {
            process.Kill();
            throw new TimeoutException("systemd-analyze verify did not finish in 60 s");
        }
        return (process.ExitCode, stdout.Result + stderr.Result);
    }

    private static bool HasSystemdAnalyze() =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Any(d => File.Exists(Path.Combine(d, "systemd-analyze")));

    [Fact]
    public void Agent_and_templated_daemon_units_verify_and_the_agent_unit_never_kills_its_daemons()
    {
        Assert.True(HasSystemdAnalyze(), "systemd-analyze is not installed (Debian package systemd)");
        var agent = Copy("nydusd-agent.service");
        // A template is verified through an instance of it.
        var daemon = Copy("nydusd@.service", "nydusd@img1.service");
        var (code, output) = Verify(agent, daemon);
        Assert.True(code == 0, output);
        // Lines systemd would only warn about still count as defects here.
        Assert.DoesNotContain("ignoring", output);

        var agentText = File.ReadAllText(agent);
        Assert.Contains("\nKillMode=process\n", agentText);
        Assert.Contains("\nType=notify\n", agentText);
        Assert.Contains("\nType=notify\n", File.ReadAllText(daemon));

        // The check can fail: a unit with a bad setting and a missing binary does not verify.
        var broken = _dir.Combine("broken.service");
        File.WriteAllText(broken, File.ReadAllText(agent).Replace("KillMode=process", "KillMode=sometimes")
            .Replace(NydusdProcess.BinaryPath, "/nonexistent/nydusd"));
        var (badCode, badOutput) = Verify(broken);
        Assert.NotEqual(0, badCode);
        Assert.Contains("kill mode", badOutput);
    }

    public void Dispose() => _dir.Dispose();
}
