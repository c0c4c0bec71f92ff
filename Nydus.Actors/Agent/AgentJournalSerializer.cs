using Akka.Actor;

namespace Nydus.Actors.Agent;

/// <summary>The node agent's events and snapshots as JSON under stable manifests (add records, never reshape them).</summary>
public sealed class AgentJournalSerializer(ExtendedActorSystem system) : JsonManifestSerializer(system, new Dictionary<string, Type>
{
    ["AgentDaemonSaved.v1"] = typeof(AgentDaemonSaved),
    ["AgentDaemonRemoved.v1"] = typeof(AgentDaemonRemoved),
    ["AgentSnapshot.v1"] = typeof(AgentSnapshot),
    ["ManagedDaemonRecord.v1"] = typeof(ManagedDaemonRecord),
    ["AgentRolloutStarted.v1"] = typeof(AgentRolloutStarted),
    ["AgentRolloutApplied.v1"] = typeof(AgentRolloutApplied),
    ["AgentFleetRolloutRecorded.v1"] = typeof(AgentFleetRolloutRecorded),
}, "agent journal record")
{
    /// <summary>The serializer id stored with every agent record. Fixed for good: changing it makes stored data unreadable.</summary>
    public const int Id = 7302;

    public override int Identifier => Id;
}
