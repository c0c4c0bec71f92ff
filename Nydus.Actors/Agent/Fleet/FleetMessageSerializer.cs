using Akka.Actor;

namespace Nydus.Actors.Agent.Fleet;

/// <summary>
/// The rollout messages between agents (<see cref="IFleetMessage"/>) as JSON under stable manifests. An agent that
/// gets a manifest it does not know (a newer agent's message) fails that message only: Akka.Remote logs it and drops
/// it, the sender's ask times out, and the coordinator reports the step failed.
/// </summary>
public sealed class FleetMessageSerializer(ExtendedActorSystem system) : JsonManifestSerializer(system, new Dictionary<string, Type>
{
    ["StartRollout.v1"] = typeof(StartRollout),
    ["GetRollout.v1"] = typeof(GetRollout),
    ["ControlRollout.v1"] = typeof(ControlRollout),
    ["RolloutReply.v1"] = typeof(RolloutReply),
    ["RolloutStatus.v1"] = typeof(RolloutStatus),
    ["UpgradeForRollout.v1"] = typeof(UpgradeForRollout),
    ["RolloutStepResult.v1"] = typeof(RolloutStepResult),
    ["GetRecordedRollout.v1"] = typeof(GetRecordedRollout),
    ["RecordedRollout.v1"] = typeof(RecordedRollout),
}, "fleet message")
{
    /// <summary>Fixed for good: every agent of a fleet must agree on it.</summary>
    public const int Id = 7303;

    public override int Identifier => Id;
}
