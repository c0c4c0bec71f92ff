using Xunit;

namespace Nydus.Actors.Tests.Support;

/// <summary>
/// A benchmark, not a regression test: runs only when NYDUS_FUSE_BENCHMARK=1 (it takes minutes and
/// needs gcc, fio and the libfuse3 examples), and is reported as skipped otherwise.
/// </summary>
public sealed class FuseBenchmarkFactAttribute : FactAttribute
{
    public FuseBenchmarkFactAttribute()
    {
        if (Environment.GetEnvironmentVariable("NYDUS_FUSE_BENCHMARK") != "1")
        {
            Skip = "benchmark: set NYDUS_FUSE_BENCHMARK=1 to run";
        }
        else if (FuseFactAttribute.MissingPrerequisite() is { } reason)
        {
            Skip = reason;
        }
    }
}
