namespace Nydus.Actors.Tests.Snapshotter;

/// <summary>
/// nydus-snapshotter's retry loop (pkg/utils/retry/retry.go, <c>Do</c>): up to <c>attempts</c> tries, after each
/// failure a sleep of the fixed delay plus a random jitter below 100 ms (its default <c>CombineDelay(FixedDelay,
/// RandomDelay)</c>), the last error returned. <c>abort</c> is its <c>OnlyRetryIf</c> predicate: true stops at once.
/// </summary>
public static class SnapshotterRetry
{
    private static readonly TimeSpan MaxJitter = TimeSpan.FromMilliseconds(100);

    public static async Task DoAsync(Func<Task> attempt, int attempts, TimeSpan delay, Func<Exception, bool>? abort = null)
    {
        for (int n = 0; ; n++)
        {
            try
            {
                await attempt();
                return;
            }
            catch (Exception e) when (e is not Xunit.Sdk.XunitException)
            {
                if (abort?.Invoke(e) == true || n == attempts - 1) throw;
            }
            await Task.Delay(delay + TimeSpan.FromTicks(Random.Shared.NextInt64(MaxJitter.Ticks)));
        }
    }
}
