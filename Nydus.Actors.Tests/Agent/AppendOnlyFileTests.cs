using Nydus.Actors.Interop;
using Nydus.Actors.Tests.Support;
using Xunit;

namespace Nydus.Actors.Tests.Agent;

public sealed class AppendOnlyFileTests
{
    [Fact]
    public void Writers_appending_at_the_same_moment_lose_no_line()
    {
        // The agent's spawn log: the daemons of one batch append "pid start role id" lines at once, and
        // FileMode.Append (one seek to the end at open) lost one of two such lines in a fleet rollout.
        using var dir = new TempDir("append");
        var path = dir.Combine("spawned.log");
        const int Writers = 8, LinesEach = 400;
        using var go = new Barrier(Writers);
        var threads = Enumerable.Range(0, Writers).Select(w => new Thread(() =>
        {
            go.SignalAndWait(TimeSpan.FromSeconds(30));
            for (int i = 0; i < LinesEach; i++) AppendOnlyFile.Append(path, $"{w} {i} upgrade d{w}\n", UnixFileMode.UserRead | UnixFileMode.UserWrite);
        })).ToList();
        threads.ForEach(t => t.Start());
        foreach (var t in threads) Assert.True(t.Join(TimeSpan.FromSeconds(60)), "a writer did not finish");

        var lines = File.ReadAllLines(path);
        Assert.Equal(Writers * LinesEach, lines.Length);
        Assert.Equal(Writers * LinesEach, lines.Distinct().Count());
        Assert.All(lines, l => Assert.Matches(@"^\d \d+ upgrade d\d$", l));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
    }

    [Fact]
    public void A_path_that_cannot_be_opened_is_an_IOException_naming_it()
    {
        using var dir = new TempDir("append");
        var path = dir.Combine("no-such-dir", "log");
        var e = Assert.Throws<IOException>(() => AppendOnlyFile.Append(path, "x\n", UnixFileMode.UserRead | UnixFileMode.UserWrite));
        Assert.Contains(path, e.Message);
        Assert.Contains("ENOENT", e.Message);
    }
}
