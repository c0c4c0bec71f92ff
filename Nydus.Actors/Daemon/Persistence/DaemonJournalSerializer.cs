using System.Runtime.Serialization;
using System.Text.Json;
using Akka.Actor;
using Akka.Serialization;

namespace Nydus.Actors.Daemon.Persistence;

/// <summary>
/// Writes the daemon's events and snapshots as JSON under stable string manifests, so that a newer build can read
/// what an older one wrote (the point of a live upgrade). Add records and manifests; never change existing ones.
/// </summary>
public sealed class DaemonJournalSerializer : SerializerWithStringManifest
{
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    private static readonly Dictionary<string, Type> TypesByManifest = new()
    {
        ["DaemonStarted.v1"] = typeof(DaemonStarted),
        ["FilesystemMounted.v1"] = typeof(FilesystemMounted),
        ["FilesystemUnmounted.v1"] = typeof(FilesystemUnmounted),
        ["DaemonRecord.v1"] = typeof(DaemonRecord),
    };

    private static readonly Dictionary<Type, string> ManifestsByType =
        TypesByManifest.ToDictionary(kv => kv.Value, kv => kv.Key);

    public DaemonJournalSerializer(ExtendedActorSystem system) : base(system)
    {
    }

    /// <summary>Fixed for good: changing it makes stored data unreadable.</summary>
    public override int Identifier => 7301;

    public override string Manifest(object o) =>
        ManifestsByType.TryGetValue(o.GetType(), out var manifest)
            ? manifest
            : throw new ArgumentException($"{o.GetType()} is not a daemon journal record");

    public override byte[] ToBinary(object obj) => JsonSerializer.SerializeToUtf8Bytes(obj, obj.GetType(), Json);

    public override object FromBinary(byte[] bytes, string manifest) =>
        TypesByManifest.TryGetValue(manifest, out var type)
            ? JsonSerializer.Deserialize(bytes, type, Json) ?? throw new SerializationException($"empty {manifest} record")
            : throw new SerializationException($"unknown daemon journal manifest '{manifest}'");
}
