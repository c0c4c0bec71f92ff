namespace Nydus.Actors.Upgrade;

/// <summary>The values of <see cref="HandoffMount.Kind"/>.</summary>
public static class HandoffMountKinds
{
    public const string Rafs = "rafs";
    public const string Passthrough = "passthrough";
    /// <summary>The command line mounted nothing: an empty root filled through the API.</summary>
    public const string None = "none";
    /// <summary>An instance mounted through the API, listed by mountpoint (the first shape of the state); a successor
    /// mounts it from <see cref="HandoffState.Instances"/>, or from the journal when the state lacks those.</summary>
    public const string ApiInstance = "api-instance";
}
