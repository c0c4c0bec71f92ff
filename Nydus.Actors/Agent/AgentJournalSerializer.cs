using System.Runtime.Serialization;
using System.Text.Json;
using Akka.Actor;
using Akka.Serialization;

namespace Nydus.Actors.Agent;

/// <summary>The node agent's events and snapshots as JSON under stable manifests (add records, never reshape them).</summary>
public sealed class AgentJournalSerializer : SerializerWithStringManifest
{
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    private static readonly Dictionary<string, Type> TypesByManifest = new()
    {
        ["AgentDaemonSaved.v1"] = typeof(AgentDaemonSaved),
        ["AgentDaemonRemoved.v1"] = typeof(AgentDaemonRemoved),
        ["AgentSnapshot.v1"] = typeof(AgentSnapshot),
        ["ManagedDaemonRecord.v1"] = typeof(ManagedDaemonRecord),
    };

    private static readonly Dictionary<Type, string> ManifestsByType = TypesByManifest.ToDictionary(kv => kv.Value, kv => kv.Key);

    public AgentJournalSerializer(ExtendedActorSystem system) : base(system)
    {
    }

    /// <summary>The serializer id stored with every agent record. Fixed for good: changing it makes stored data unreadable.</summary>
    public const int Id = 7302;

    public override int Identifier => Id;

    public override string Manifest(object o) =>
        ManifestsByType.TryGetValue(o.GetType(), out var manifest) ? manifest : throw new ArgumentException($"{o.GetType()} is not an agent journal record");

    public override byte[] ToBinary(object obj) => JsonSerializer.SerializeToUtf8Bytes(obj, obj.GetType(), Json);

    public override object FromBinary(byte[] bytes, string manifest) =>
        TypesByManifest.TryGetValue(manifest, out var type)
            ? JsonSerializer.Deserialize(bytes, type, Json) ?? throw new SerializationException($"empty {manifest} record")
            : throw new SerializationException($"unknown agent journal manifest '{manifest}'");
}
