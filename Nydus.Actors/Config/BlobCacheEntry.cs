using System.Text.Json;
using System.Text.Json.Nodes;

namespace Nydus.Actors.Config;

/// <summary>
/// One entry of upstream's blob cache manager (<c>api/src/config.rs</c> <c>BlobCacheEntry</c>), the body of
/// <c>PUT /api/v2/blobs</c> and an item of a singleton <c>--config</c>'s <c>blobs</c> list:
/// <c>{"type":"bootstrap"|"datablob","id":…,"domain_id":…,"config":legacy?,"config_v2":v2?}</c>. Parsing converts a
/// legacy <c>config</c> (what nydus-snapshotter sends) to V2 and validates it, as upstream's
/// <c>prepare_configuration_info</c> does; everything refused is a <see cref="ConfigException"/> naming the field.
/// </summary>
/// <param name="Type"><see cref="BootstrapType"/> or <see cref="DataBlobType"/>.</param>
/// <param name="BlobId">The entry's id (for a bootstrap: the image's id, chosen by the client).</param>
/// <param name="DomainId">The domain (image group) the entry belongs to; "" is the default domain.</param>
/// <param name="Config">The validated configuration (legacy converted).</param>
/// <param name="MetadataPath">The bootstrap file (<c>metadata_path</c>), as given.</param>
/// <param name="Text">The entry as received: what is recorded and handed over, so a restart re-adds the same thing.</param>
public sealed record BlobCacheEntry(string Type, string BlobId, string DomainId, ConfigV2 Config, string MetadataPath, string Text)
{
    public const string BootstrapType = "bootstrap";
    public const string DataBlobType = "datablob";

    /// <summary>Separates domain and blob in a key (upstream's ID_SPLITTER); neither id may contain it.</summary>
    public const char KeySeparator = '/';

    /// <summary>Upstream's <c>generate_blob_key</c>: the blob id alone in the default domain, else <c>domain/blob</c>.</summary>
    public static string Key(string domainId, string blobId) =>
        domainId.Length == 0 ? blobId : domainId + KeySeparator + blobId;

    public string Key() => Key(DomainId, BlobId);

    /// <summary>
    /// Ours, past upstream (whose manager takes RAFS bootstraps only): the blob ids of the untagged device slots of a
    /// plain EROFS bootstrap (<c>mkfs.erofs --chunksize=N --blobdev=B</c>), in table order, from the entry's
    /// <c>devices</c> array: what the kernel's OPEN names them by (the mount's <c>device=</c> option) and what the
    /// backend reads them as. Without <c>devices</c>, a localfs <c>blob_file</c> names the one device by its file name.
    /// </summary>
    public IReadOnlyList<string> DeviceBlobIds { get; init; } = [];

    /// <summary>The cache work dir of the entry's config (filecache/blobcache or fscache), or null for another cache type.</summary>
    public string? WorkDir => Config.Cache switch
    {
        { IsFileCache: true } c => c.FileCache?.WorkDir,
        { IsFsCache: true } c => c.FsCache?.WorkDir,
        _ => null,
    };

    /// <summary>Parses and validates one entry; <paramref name="source"/> names it in errors.</summary>
    public static BlobCacheEntry Parse(string text, string source)
    {
        JsonNode? node;
        try
        {
            node = JsonNode.Parse(text, documentOptions: new JsonDocumentOptions { MaxDepth = NydusConfigLoader.MaxNesting });
        }
        catch (JsonException e)
        {
            throw new ConfigException(ConfigErrorKind.Malformed, $"{source}: not valid JSON: {JsonErrorText.Describe(e)}", e);
        }
        return Parse(node, source, text);
    }

    /// <summary>Parses an entry already read as part of a larger document (a <c>blobs</c> list).</summary>
    public static BlobCacheEntry Parse(JsonNode? node, string source, string? text = null)
    {
        if (node is not JsonObject entry)
            throw new ConfigException(ConfigErrorKind.Malformed, $"{source}: a blob cache entry must be a JSON object");
        var type = RequiredString(entry, "type", source);
        if (type is not (BootstrapType or DataBlobType))
            throw new ConfigException(ConfigErrorKind.Malformed, $"{source}: type '{type}' is neither '{BootstrapType}' nor '{DataBlobType}'");
        var blobId = RequiredString(entry, "id", source);
        var domainId = OptionalString(entry, "domain_id", source) ?? "";
        if (blobId.Length == 0) throw new ConfigException(ConfigErrorKind.Malformed, $"{source}: id is empty");
        if (blobId.Contains(KeySeparator)) throw new ConfigException(ConfigErrorKind.Malformed, $"{source}: id '{blobId}' contains '{KeySeparator}'");
        if (domainId.Contains(KeySeparator)) throw new ConfigException(ConfigErrorKind.Malformed, $"{source}: domain_id '{domainId}' contains '{KeySeparator}'");

        ConfigV2 config;
        string? metadataPath;
        if (entry["config_v2"] is JsonObject v2)
        {
            config = NydusConfigLoader.Parse(v2.ToJsonString(), $"{source}: config_v2");
            metadataPath = OptionalString(v2, "metadata_path", $"{source}: config_v2");
        }
        else if (entry["config"] is JsonObject legacy)
        {
            config = NydusConfigLoader.Parse(LegacyAsRafsConfig(legacy, source).ToJsonString(), $"{source}: config");
            metadataPath = OptionalString(legacy, "metadata_path", $"{source}: config");
        }
        else
        {
            throw new ConfigException(ConfigErrorKind.Malformed, $"{source}: neither 'config_v2' nor 'config' is a JSON object");
        }

        // Upstream validates only the cache and backend here; a blob entry serves no filesystem, so rafs may be absent.
        if (config.Backend is null)
            throw new ConfigException(ConfigErrorKind.InvalidBackend, $"{source}: the configuration has no backend");
        var cache = config.Cache;
        if (cache is null || !(cache.IsFileCache || cache.IsFsCache))
            throw new ConfigException(ConfigErrorKind.UnknownCacheType,
                $"{source}: cache type '{cache?.Type ?? ""}' cannot hold blobs for the blob cache manager (expected blobcache, filecache or fscache)");
        return new BlobCacheEntry(type, blobId, domainId, config, metadataPath ?? "", text ?? entry.ToJsonString())
        {
            DeviceBlobIds = ParseDevices(entry, config, source),
        };
    }

    private static IReadOnlyList<string> ParseDevices(JsonObject entry, ConfigV2 config, string source)
    {
        if (entry["devices"] is null)
            return config.Backend?.LocalFs is { BlobFile.Length: > 0 } local ? [Path.GetFileName(local.BlobFile)] : [];
        if (entry["devices"] is not JsonArray devices)
            throw new ConfigException(ConfigErrorKind.Malformed, $"{source}: 'devices' must be an array of blob ids");
        var ids = new List<string>();
        for (int i = 0; i < devices.Count; i++)
        {
            if (devices[i] is not JsonValue v || !v.TryGetValue<string>(out var id) || id.Length == 0)
                throw new ConfigException(ConfigErrorKind.Malformed, $"{source}: devices[{i}] must be a non-empty blob id");
            if (id.Contains(KeySeparator) || id.Length > 64)
                throw new ConfigException(ConfigErrorKind.Malformed,
                    $"{source}: devices[{i}] '{id}' must not contain '{KeySeparator}' nor be longer than 64 bytes (an EROFS device tag)");
            ids.Add(id);
        }
        return ids;
    }

    /// <summary>
    /// Reads a singleton <c>--config</c> document: any JSON object; its <c>blobs</c> array, when present, is a
    /// <c>BlobCacheList</c> whose entries are parsed one by one (an entry that does not parse is reported with its
    /// index and skipped by the caller, as upstream adds the rest).
    /// </summary>
    public static IReadOnlyList<(int Index, BlobCacheEntry? Entry, string? Error)> ParseList(string text, string source)
    {
        JsonNode? root;
        try
        {
            root = JsonNode.Parse(text, documentOptions: new JsonDocumentOptions { MaxDepth = NydusConfigLoader.MaxNesting });
        }
        catch (JsonException e)
        {
            throw new ConfigException(ConfigErrorKind.Malformed, $"{source}: not valid JSON: {JsonErrorText.Describe(e)}", e);
        }
        if (root is not JsonObject document)
            throw new ConfigException(ConfigErrorKind.Malformed, $"{source}: a singleton configuration must be a JSON object");
        if (document["blobs"] is null) return [];
        if (document["blobs"] is not JsonArray blobs)
            throw new ConfigException(ConfigErrorKind.Malformed, $"{source}: 'blobs' must be an array of blob cache entries");
        var entries = new List<(int, BlobCacheEntry?, string?)>();
        for (int i = 0; i < blobs.Count; i++)
        {
            try
            {
                entries.Add((i, Parse(blobs[i], $"{source}: blobs[{i}]", blobs[i]?.ToJsonString()), null));
            }
            catch (ConfigException e)
            {
                entries.Add((i, null, e.Message));
            }
        }
        return entries;
    }

    /// <summary>
    /// Upstream's <c>BlobCacheEntryConfig</c> (flat: <c>backend_type</c>, <c>backend_config</c>, <c>cache_type</c>,
    /// <c>cache_config</c>, <c>prefetch_config</c>) as the legacy RAFS document it converts like, so one converter
    /// serves both. Its prefetch becomes the filesystem prefetch, which the conversion copies into the cache's.
    /// </summary>
    private static JsonObject LegacyAsRafsConfig(JsonObject legacy, string source)
    {
        var device = new JsonObject
        {
            ["id"] = OptionalString(legacy, "id", $"{source}: config") ?? "",
            ["backend"] = new JsonObject
            {
                ["type"] = OptionalString(legacy, "backend_type", $"{source}: config") ?? "",
                ["config"] = legacy["backend_config"]?.DeepClone() ?? new JsonObject(),
            },
            ["cache"] = new JsonObject
            {
                ["type"] = OptionalString(legacy, "cache_type", $"{source}: config") ?? "",
                ["config"] = legacy["cache_config"]?.DeepClone() ?? new JsonObject(),
            },
        };
        if (legacy["external_backends"] is { } external) device["external_backends"] = external.DeepClone();
        var document = new JsonObject { ["device"] = device, ["mode"] = RafsConfigV2.DirectMode };
        if (legacy["prefetch_config"] is JsonObject prefetch) document["fs_prefetch"] = prefetch.DeepClone();
        return document;
    }

    private static string RequiredString(JsonObject o, string name, string source) =>
        OptionalString(o, name, source) ?? throw new ConfigException(ConfigErrorKind.Malformed, $"{source}: '{name}' is required");

    private static string? OptionalString(JsonObject o, string name, string source)
    {
        var value = o[name];
        if (value is null) return null;
        if (value is JsonValue v && v.TryGetValue<string>(out var s)) return s;
        throw new ConfigException(ConfigErrorKind.Malformed, $"{source}: '{name}' must be a string");
    }
}
