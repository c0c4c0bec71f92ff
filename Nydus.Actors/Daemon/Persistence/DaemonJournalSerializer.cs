using System.Runtime.Serialization;
using System.Text.Json;
using Akka.Actor;
using Akka.Serialization;

namespace Nydus.Actors.Daemon.Persistence;

/// <summary>
/// Writes the daemon's events and snapshots as JSON under stable string manifests, so that a newer build can read
/// what an older one wrote (the point of a live upgrade). Add records and manifests; never change existing ones.
/// Records that carry mount configs (which may hold registry credentials) are sealed (<see cref="JournalSeal"/>) when
/// the actor system names a key file (HOCON <c>nydus.journal.key-file</c>, set by the host to the work dir's key):
/// their manifest gains <see cref="SealedSuffix"/>. Plain records of older builds still read.
/// </summary>
public sealed class DaemonJournalSerializer : SerializerWithStringManifest
{
    public const string SealedSuffix = "+sealed";

    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    private static readonly Dictionary<string, Type> TypesByManifest = new()
    {
        ["DaemonStarted.v1"] = typeof(DaemonStarted),
        ["FilesystemMounted.v1"] = typeof(FilesystemMounted),
        ["FilesystemUnmounted.v1"] = typeof(FilesystemUnmounted),
        ["DaemonRecord.v1"] = typeof(DaemonRecord),
        ["BlockExportAdded.v1"] = typeof(BlockExportAdded),
        ["BlockExportRemoved.v1"] = typeof(BlockExportRemoved),
        ["BlockServiceRecord.v1"] = typeof(BlockServiceRecord),
        ["BlobEntryAdded.v1"] = typeof(BlobEntryAdded),
        ["BlobEntryRemoved.v1"] = typeof(BlobEntryRemoved),
    };

    private static readonly Dictionary<Type, string> ManifestsByType =
        TypesByManifest.ToDictionary(kv => kv.Value, kv => kv.Key);

    private readonly JournalSeal? _seal;
    private readonly string? _keyProblem;

    public DaemonJournalSerializer(ExtendedActorSystem system) : base(system)
    {
        var keyFile = system.Settings.Config.GetString("nydus.journal.key-file", "");
        if (string.IsNullOrEmpty(keyFile)) return;
        try
        {
            _seal = new JournalSeal(File.ReadAllBytes(keyFile), keyFile);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException)
        {
            // Reported at the first record that needs it, as a serialization failure that names the file.
            _keyProblem = $"the journal key {keyFile} cannot be used: {e.Message}";
        }
    }

    /// <summary>Fixed for good: changing it makes stored data unreadable.</summary>
    public override int Identifier => 7301;

    public override string Manifest(object o)
    {
        if (!ManifestsByType.TryGetValue(o.GetType(), out var manifest))
            throw new ArgumentException($"{o.GetType()} is not a daemon journal record");
        return CarriesConfigs(o) && (_seal is not null || _keyProblem is not null) ? manifest + SealedSuffix : manifest;
    }

    public override byte[] ToBinary(object obj)
    {
        var json = JsonSerializer.SerializeToUtf8Bytes(obj, obj.GetType(), Json);
        if (!CarriesConfigs(obj) || (_seal is null && _keyProblem is null)) return json;
        return Seal.Seal(json, ManifestsByType[obj.GetType()]);
    }

    public override object FromBinary(byte[] bytes, string manifest)
    {
        var plainManifest = manifest.EndsWith(SealedSuffix, StringComparison.Ordinal) ? manifest[..^SealedSuffix.Length] : manifest;
        if (!TypesByManifest.TryGetValue(plainManifest, out var type))
            throw new SerializationException($"unknown daemon journal manifest '{manifest}'");
        if (!ReferenceEquals(plainManifest, manifest))
            bytes = (_seal ?? throw new SerializationException(_keyProblem ?? $"a sealed {plainManifest} record needs the journal key (nydus.journal.key-file), which this process was not given"))
                .Open(bytes, plainManifest);
        try
        {
            return JsonSerializer.Deserialize(bytes, type, Json) ?? throw new SerializationException($"empty {manifest} record");
        }
        catch (JsonException e)
        {
            throw new SerializationException($"a {manifest} record does not decode: {e.Message}", e);
        }
    }

    private JournalSeal Seal => _seal ?? throw new SerializationException(_keyProblem!);

    /// <summary>Records whose JSON holds mount, export or blob configs, and so possibly credentials.</summary>
    private static bool CarriesConfigs(object o) =>
        o is FilesystemMounted or DaemonRecord or BlockExportAdded or BlockServiceRecord or BlobEntryAdded;
}
