using Xunit;

namespace Nydus.Actors.Tests.Support;

/// <summary>The theory form of <see cref="FuseFactAttribute"/>: skipped with the reason where root or /dev/fuse is missing.</summary>
public sealed class FuseTheoryAttribute : TheoryAttribute
{
    public FuseTheoryAttribute()
    {
        if (FuseFactAttribute.MissingPrerequisite() is { } reason)
        {
            Skip = reason;
        }
    }
}
