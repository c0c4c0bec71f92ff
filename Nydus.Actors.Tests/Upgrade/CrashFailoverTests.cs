using Nydus.Actors.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace Nydus.Actors.Tests.Upgrade;

/// <summary>
/// Crash failover (§3, §4.5) with real processes: the serving nydusd is SIGKILLed during reads while the supervisor
/// holds its fd (from sendfd); the same command line started again detects the crash, waits in INIT, takes the fd
/// over, applies --failover-policy once, and serves on the same kernel connection.
/// </summary>
[Collection("upgrade")]
public sealed class CrashFailoverTests(ITestOutputHelper output)
{
    private static readonly int Kills = int.TryParse(Environment.GetEnvironmentVariable("NYDUS_TEST_KILLS"), out var k) ? k : 10;


    [FuseFact]
    public async Task Ten_kills_with_resend_lose_no_reader_operation()
    {
        await using var rig = await UpgradeRig.StartAsync("--failover-policy", "resend");
        using var readers = new TreeReaders(rig.Tree, 4);
        readers.Start();
        await readers.AdvanceAsync(200, UpgradeRig.Wait);
        var recoveries = new List<TimeSpan>();
        var resent = new List<long>();
        for (int i = 0; i < Kills; i++)
        {
            recoveries.Add(await rig.KillAndFailOverAsync());
            // Read before the successor could be killed: what the kernel sent it again with the resend bit (the
            // requests the killed daemon had read and not answered) and how many of those it refused.
            var (_, resentHere, refused) = await rig.FailoverCountersAsync();
            Assert.Equal(0, refused); // a read-only image: every resent request is safe to repeat, and was answered
            resent.Add(resentHere);
            await readers.AdvanceAsync(100, UpgradeRig.Wait);
        }

        Assert.True(readers.Stop(UpgradeRig.Wait), "a reader is still blocked");
        recoveries.Sort();
        output.WriteLine($"{Kills} SIGKILL failovers (resend): {readers.Operations} reader operations, {readers.FailureCount} failed; "
                         + $"longest operation {readers.Longest.TotalMilliseconds:F0} ms ({readers.LongestWhat}); SIGKILL to first read "
                         + $"median {recoveries[Kills / 2].TotalMilliseconds:F0} ms, max {recoveries[^1].TotalMilliseconds:F0} ms; "
                         + $"requests resent by the kernel per failover: [{string.Join(", ", resent)}]");
        Assert.True(readers.FailureCount == 0, string.Join("\n", readers.Failures.Take(20)));
        Assert.Equal("RUNNING", await UpgradeRig.StateOfAsync(rig.CurrentSocket));
        // Whatever a killed daemon had read and not answered came back resent and was answered: nothing is left
        // waiting on the connection once the readers have stopped, and no reader lost an operation. (How many requests a
        // kill catches mid-way is chance: in one run at load ~30, 3 requests in 1 of 10 kills; so a count above zero is
        // reported, not required.)
        Assert.Equal(0, rig.WaitingRequests());
    }

    /// <summary>
    /// Policy none documents the loss: a request the killed daemon had read but not answered stays pending on the
    /// connection for good, so the reader that sent it blocks until the connection is aborted (rig dispose); nothing
    /// else goes wrong, and the reads that do complete are correct.
    /// </summary>
    [FuseFact]
    public async Task Kills_with_policy_none_leave_the_unanswered_requests_pending()
    {
        await using var rig = await UpgradeRig.StartAsync("--failover-policy", "none");
        using var readers = new TreeReaders(rig.Tree, 8);
        readers.Start();
        await readers.AdvanceAsync(200, UpgradeRig.Wait);
        var blockedAfter = new List<int>();
        for (int i = 0; i < Kills; i++)
        {
            await rig.KillAndFailOverAsync();
            // Policy none asks the kernel for nothing: no request comes back to the successor with the resend bit.
            Assert.Equal(0, (await rig.FailoverCountersAsync()).Resent);
            // A reader whose request survived the kill finishes within moments of the successor's RUNNING; one still
            // busy after 3 s waits for an answer that never comes.
            await Task.Delay(TimeSpan.FromSeconds(3));
            blockedAfter.Add(readers.Blocked(TimeSpan.FromSeconds(3)));
            if (blockedAfter[^1] == 8) break;
        }

        var failures = readers.Failures;
        output.WriteLine($"{blockedAfter.Count} SIGKILL failovers (none): readers blocked for good after each: "
                         + $"[{string.Join(", ", blockedAfter)}] of 8; {readers.Operations} operations completed, {failures.Count} failed");
        foreach (var failure in failures.Take(10)) output.WriteLine(failure);
        Assert.Empty(failures);
        Assert.Equal("RUNNING", await UpgradeRig.StateOfAsync(rig.CurrentSocket));
        // Every file whose read completes (bounded per file) has its content; a file whose page a killed daemon's
        // READ left locked does not complete, and only such files may be missing.
        var (served, blocked) = await ReadEachBoundedAsync(rig, TimeSpan.FromSeconds(5));
        output.WriteLine($"after the kills: {served} files read correctly, {blocked.Count} blocked [{string.Join(", ", blocked)}]");
        Assert.True(served > 0, "the successor served no file");
        // What the name says: the requests the killed daemons had read and not answered are still pending on the
        // connection (the kernel's count of requests waiting for an answer), and a reader is blocked exactly when one is.
        // The readers that are not blocked stop first, so that no live request is counted.
        // (Stop returns at the first blocked one; the others end their current read within moments.)
        readers.Stop(TimeSpan.FromSeconds(10));
        await Task.Delay(TimeSpan.FromSeconds(1));
        int waiting = rig.WaitingRequests();
        int blockedNow = readers.Blocked(TimeSpan.FromSeconds(3));
        output.WriteLine($"requests still waiting for an answer on the connection: {waiting}; readers blocked: {blockedNow}");
        Assert.Equal(blockedNow > 0 || blocked.Count > 0, waiting > 0);
    }

    /// <summary>Reads every file (each bounded); a wrong content fails, a read still blocked after the bound is
    /// counted as blocked.</summary>
    private static async Task<(int Served, List<string> Blocked)> ReadEachBoundedAsync(UpgradeRig rig, TimeSpan bound)
    {
        int served = 0;
        var blocked = new List<string>();
        foreach (var (file, hash) in rig.FileHashes)
        {
            var read = Task.Run(() =>
            {
                using var handle = File.OpenHandle(rig.MountPoint + file);
                TreeReaders.DropCache(handle);
                var content = new byte[rig.FileSizes[file]];
                int total = 0, n;
                while (total < content.Length && (n = RandomAccess.Read(handle, content.AsSpan(total), total)) > 0) total += n;
                return System.Security.Cryptography.SHA256.HashData(content.AsSpan(0, total));
            });
            if (await Task.WhenAny(read, Task.Delay(bound)) != read)
            {
                blocked.Add(file);
                continue;
            }
            Assert.True((await read).AsSpan().SequenceEqual(hash), $"{file} differs");
            served++;
        }
        return (served, blocked);
    }
}
