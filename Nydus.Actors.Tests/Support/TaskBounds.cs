using Xunit;

namespace Nydus.Actors.Tests.Support;

/// <summary>Bounded waits for tasks in tests, awaited rather than blocked on (xUnit1031): a test that hangs fails
/// with what it was waiting for.</summary>
internal static class TaskBounds
{
    /// <summary>Awaits <paramref name="task"/> (its exception, if any, is the test's); fails the test naming
    /// <paramref name="what"/> if it is not done within <paramref name="bound"/>.</summary>
    public static async Task Within(this Task task, TimeSpan bound, string what)
    {
        if (await Task.WhenAny(task, Task.Delay(bound)) != task)
            Assert.Fail($"{what} (not done after {bound.TotalSeconds:0.#} s)");
        await task;
    }
}
