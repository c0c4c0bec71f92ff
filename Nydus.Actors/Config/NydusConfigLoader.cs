using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Tomlyn;

namespace Nydus.Actors.Config;

/// <summary>
/// Reads a per-mount configuration the way upstream's <c>ConfigV2::from_str</c>/<c>from_file</c> do: JSON ConfigV2,
/// then TOML ConfigV2, then legacy JSON <c>RafsConfig</c> converted to V2. Whatever is accepted has passed
/// <see cref="ConfigValidator"/>; everything rejected is a <see cref="ConfigException"/> naming the source.
/// </summary>
/// <remarks>
/// A document that binds as V2 but fails validation is rejected at once, without trying the legacy form, as upstream
/// does. Where upstream reports only "failed to parse configuration information", we report the error of the form
/// the document looks like (a <c>version</c> key: V2; a <c>device</c> key: legacy).
/// </remarks>
public static class NydusConfigLoader
{
    /// <summary>Largest configuration file accepted (1 MiB), as upstream's <c>from_file</c>.</summary>
    public const long MaxFileSize = 0x10_0000;

    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>
    /// Parses and validates configuration text.
    /// </summary>
    /// <param name="text">A JSON or TOML V2 document, or a legacy JSON document.</param>
    /// <param name="sourceName">Names the input in error messages: a path, or e.g. <c>mount request for /sub</c>.</param>
    /// <param name="imagePullAuth">
    /// The <c>IMAGE_PULL_AUTH</c> value if the caller honours it (FUSE <c>--config</c>): replaces
    /// <c>backend.registry.auth</c> when a registry section exists. The parser never reads the environment itself.
    /// </param>
    public static ConfigV2 Parse(string text, string sourceName, string? imagePullAuth = null)
    {
        ArgumentNullException.ThrowIfNull(text);
        ArgumentNullException.ThrowIfNull(sourceName);
        // The same bound as a file, for text from the API: no parser sees more than a configuration can need.
        if (text.Length > MaxFileSize)
        {
            throw new ConfigException(ConfigErrorKind.TooLarge,
                $"{sourceName}: {text.Length} characters, more than the {MaxFileSize} a configuration may have");
        }

        var config = ParseAndValidate(text, sourceName);
        return config.WithRegistryAuth(imagePullAuth);
    }

    /// <summary>Reads <paramref name="path"/> (at most <see cref="MaxFileSize"/> bytes, UTF-8) and parses it with <see cref="Parse"/>.</summary>
    public static ConfigV2 LoadFile(string path, string? imagePullAuth = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        return Parse(ReadFile(path), path, imagePullAuth);
    }

    /// <summary>
    /// The configuration text nydusd builds for <c>--localfs-dir D</c> (legacy form): localfs backend on D,
    /// blobcache with work_dir D, direct mode, no digest validation. Pass it to <see cref="Parse"/> or keep it as the
    /// mount command's config text, as upstream does.
    /// </summary>
    public static string CreateLocalFsDirConfigText(string directory)
    {
        ArgumentNullException.ThrowIfNull(directory);

        using var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
        {
            writer.WriteStartObject();
            writer.WriteStartObject("device");

            writer.WriteStartObject("backend");
            writer.WriteString("type", BackendConfigV2.LocalFsType);
            writer.WriteStartObject("config");
            writer.WriteString("dir", directory);
            writer.WriteBoolean("readahead", true); // upstream still writes this retired key; it is ignored
            writer.WriteEndObject();
            writer.WriteEndObject();

            writer.WriteStartObject("cache");
            writer.WriteString("type", CacheConfigV2.BlobCacheType);
            writer.WriteStartObject("config");
            writer.WriteBoolean("compressed", false); // likewise ignored, kept to match upstream's text
            writer.WriteString("work_dir", directory);
            writer.WriteEndObject();
            writer.WriteEndObject();

            writer.WriteEndObject();
            writer.WriteString("mode", RafsConfigV2.DirectMode);
            writer.WriteBoolean("digest_validate", false);
            writer.WriteBoolean("iostats_files", false);
            writer.WriteEndObject();
        }

        return Encoding.UTF8.GetString(buffer.GetBuffer(), 0, (int)buffer.Length);
    }

    /// <summary>The text of a configuration file, with the same size and encoding checks as <see cref="LoadFile"/>.</summary>
    public static string ReadConfigText(string path) => ReadFile(path);

    private static string ReadFile(string path)
    {
        try
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
            if (stream.Length > MaxFileSize)
            {
                throw new ConfigException(
                    ConfigErrorKind.TooLarge,
                    $"configuration file {path} is {stream.Length} bytes, larger than the {MaxFileSize} bytes allowed");
            }

            using var reader = new StreamReader(stream, StrictUtf8, detectEncodingFromByteOrderMarks: false);
            return reader.ReadToEnd();
        }
        catch (DecoderFallbackException e)
        {
            throw new ConfigException(ConfigErrorKind.Malformed, $"configuration file {path} is not valid UTF-8", e);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ConfigException(ConfigErrorKind.Unreadable, $"cannot read configuration file {path}: {e.Message}", e);
        }
    }

    private static ConfigV2 ParseAndValidate(string text, string sourceName)
    {
        JsonNode? root;
        try
        {
            root = JsonNode.Parse(text, documentOptions: new JsonDocumentOptions { AllowDuplicateProperties = false });
        }
        catch (JsonException jsonError)
        {
            // Not JSON at all: the only other V2 form is TOML; legacy documents are always JSON.
            return ParseToml(text, sourceName, jsonError);
        }

        if (root is not JsonObject document)
        {
            throw new ConfigException(ConfigErrorKind.Malformed, $"{sourceName}: a configuration must be a JSON object");
        }

        if (TryBind(document, out ConfigV2? v2, out var v2Error))
        {
            ConfigValidator.Validate(v2, sourceName);
            return v2;
        }

        if (TryBind(document, out LegacyRafsConfig? legacy, out var legacyError))
        {
            ConfigV2 converted;
            try
            {
                converted = legacy.ToV2();
            }
            catch (ConfigException e)
            {
                throw new ConfigException(e.Kind, $"{e.Message} (in {sourceName})", e);
            }

            ConfigValidator.Validate(converted, sourceName);
            return converted;
        }

        if (document.ContainsKey("version"))
        {
            throw new ConfigException(ConfigErrorKind.Malformed, $"{sourceName}: invalid version 2 configuration: {v2Error}");
        }

        if (document.ContainsKey("device"))
        {
            throw new ConfigException(ConfigErrorKind.Malformed, $"{sourceName}: invalid legacy configuration: {legacyError}");
        }

        throw new ConfigException(
            ConfigErrorKind.Malformed,
            $"{sourceName}: neither a version 2 configuration (no 'version' key) nor a legacy configuration (no 'device' key)");
    }

    /// <summary>Deepest nesting of brackets and braces a configuration may have (the JSON reader's own default).</summary>
    public const int MaxNesting = 64;

    private static ConfigV2 ParseToml(string text, string sourceName, JsonException jsonError)
    {
        // The TOML parser reports every unexpected token, and its memory grows with the nesting: 3 MB of '[' cost
        // gigabytes and a 13 MB error. Text nested deeper than any configuration is refused before it gets there.
        if (NestingDepth(text) > MaxNesting)
        {
            throw new ConfigException(ConfigErrorKind.Malformed,
                $"{sourceName}: neither JSON ({JsonErrorText.Describe(jsonError)}) nor TOML (brackets nested deeper than {MaxNesting} levels)");
        }

        JsonObject document;
        try
        {
            document = TomlConfigReader.ToJson(text, sourceName);
        }
        catch (TomlException tomlError)
        {
            throw new ConfigException(
                ConfigErrorKind.Malformed,
                $"{sourceName}: neither JSON ({JsonErrorText.Describe(jsonError)}) nor TOML ({FirstLine(tomlError.Message)})",
                tomlError);
        }
        catch (Exception e) when (e is ArgumentException or FormatException or OverflowException or InvalidOperationException)
        {
            // Tomlyn throws these for some malformed input instead of a TomlException (the config fuzz test found
            // ArgumentOutOfRangeException for a "\uD800" escape); it is the same mistake of the caller's.
            throw new ConfigException(
                ConfigErrorKind.Malformed,
                $"{sourceName}: neither JSON ({JsonErrorText.Describe(jsonError)}) nor TOML ({FirstLine(e.Message)})", e);
        }

        if (!TryBind(document, out ConfigV2? config, out var bindError))
        {
            throw new ConfigException(ConfigErrorKind.Malformed, $"{sourceName}: invalid version 2 TOML configuration: {bindError}");
        }

        ConfigValidator.Validate(config, sourceName);
        return config;
    }

    /// <summary>The deepest nesting of <c>[</c>/<c>{</c> outside quoted strings and comments (JSON and TOML alike).</summary>
    private static int NestingDepth(string text)
    {
        int depth = 0, deepest = 0;
        for (int i = 0; i < text.Length; i++)
        {
            switch (text[i])
            {
                case '[' or '{':
                    deepest = Math.Max(deepest, ++depth);
                    break;
                case ']' or '}':
                    depth = Math.Max(0, depth - 1);
                    break;
                case '"' or '\'':
                    char quote = text[i];
                    for (i++; i < text.Length && text[i] != quote && text[i] != '\n'; i++)
                        if (quote == '"' && text[i] == '\\') i++;
                    break;
                case '#':
                    while (i < text.Length && text[i] != '\n') i++;
                    break;
            }
        }
        return deepest;
    }

    /// <summary>The first line of a parser's report, at most 300 characters: one error is enough to fix the input,
    /// and the report of a mangled document can be larger than the document.</summary>
    private static string FirstLine(string message)
    {
        var end = message.IndexOfAny(['\r', '\n']);
        var line = end >= 0 ? message[..end] + " (and more)" : message;
        return line.Length > 300 ? line[..300] + "..." : line;
    }

    private static bool TryBind<T>(
        JsonObject document,
        [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out T? value,
        out string error)
        where T : class
    {
        try
        {
            value = document.Deserialize<T>(ConfigJson.Options);
            error = "";
            return value is not null;
        }
        catch (JsonException e)
        {
            value = null;
            error = JsonErrorText.Describe(e);
            return false;
        }
    }
}
