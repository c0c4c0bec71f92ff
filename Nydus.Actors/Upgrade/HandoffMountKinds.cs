namespace Nydus.Actors.Upgrade;

/// <summary>The values of <see cref="HandoffMount.Kind"/>.</summary>
public static class HandoffMountKinds
{
    public const string Rafs = "rafs";
    public const string Passthrough = "passthrough";
    /// <summary>The command line mounted nothing: an empty root filled through the API.</summary>
    public const string None = "none";
    /// <summary>An instance mounted through the API: a successor restores it from the journal, not the state.</summary>
    public const string ApiInstance = "api-instance";
}
