using System.Runtime.Serialization;
using System.Text.Json;
using Akka.Actor;
using Akka.Serialization;

namespace Nydus.Actors.Agent;

/// <summary>
/// Records as JSON (web defaults) under stable string manifests, for what outlives one build: the agent's journal and
/// the messages between agents of a fleet. Subclasses name their manifests; add records and optional fields, never
/// reshape or rename them.
/// </summary>
public abstract class JsonManifestSerializer : SerializerWithStringManifest
{
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    private readonly IReadOnlyDictionary<string, Type> _typesByManifest;
    private readonly Dictionary<Type, string> _manifestsByType;
    private readonly string _what;

    /// <param name="what">What the records are, for error messages ("agent journal record").</param>
    protected JsonManifestSerializer(ExtendedActorSystem system, IReadOnlyDictionary<string, Type> typesByManifest, string what) : base(system)
    {
        _typesByManifest = typesByManifest;
        _manifestsByType = typesByManifest.ToDictionary(kv => kv.Value, kv => kv.Key);
        _what = what;
    }

    public override string Manifest(object o) =>
        _manifestsByType.TryGetValue(o.GetType(), out var manifest) ? manifest : throw new ArgumentException($"{o.GetType()} is not an {_what}");

    public override byte[] ToBinary(object obj) => JsonSerializer.SerializeToUtf8Bytes(obj, obj.GetType(), Json);

    public override object FromBinary(byte[] bytes, string manifest) =>
        _typesByManifest.TryGetValue(manifest, out var type)
            ? JsonSerializer.Deserialize(bytes, type, Json) ?? throw new SerializationException($"empty {manifest} {_what}")
            : throw new SerializationException($"unknown {_what} manifest '{manifest}'");
}
