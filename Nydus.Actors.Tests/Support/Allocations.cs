namespace Nydus.Actors.Tests.Support;

/// <summary>Measures what a piece of the data path allocates on the managed heap of the calling thread.</summary>
public static class Allocations
{
    /// <summary>
    /// The fewest bytes one round allocated on this thread, over up to three rounds. A per-request allocation shows
    /// in every round (a thousand times over); a one-time one on this thread (a lazy initialisation, a tier-up while
    /// the machine is loaded) in one round only, which failed the read-path tests now and then in full runs.
    /// </summary>
    public static long FewestBytesAllocated(Action round)
    {
        long fewest = long.MaxValue;
        for (int r = 0; r < 3 && fewest != 0; r++)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            round();
            fewest = Math.Min(fewest, GC.GetAllocatedBytesForCurrentThread() - before);
        }
        return fewest;
    }
}
