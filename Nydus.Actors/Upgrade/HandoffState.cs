using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Nydus.Actors.Upgrade;

/// <summary>FUSE INIT as negotiated with the kernel, so a successor accepts the received fd as already initialized.</summary>
/// <param name="KernelFlags">Everything the kernel offered (added after v1's first shape; 0 when absent).</param>
public sealed record FuseInitState(uint Major, uint Minor, ulong Flags, uint MaxWrite, uint MaxReadahead, uint MaxPages,
    bool NoOpen, bool NoOpenDir, ulong KernelFlags = 0);

/// <summary>One mounted instance: what is needed to re-open it (bootstrap + config, or a passthrough directory).</summary>
public sealed record HandoffMount(string Mountpoint, string Kind, string? Source, string? Config, string? SharedDir,
    bool Writable);

/// <summary>
/// One instance of the mount table, as the mount API took it: enough for a successor to open and attach it at the same
/// VFS index (so the kernel's node ids stay valid) without reading the journal. <see cref="Config"/> is the whole
/// configuration text, registry secrets included: the state lives in the supervisor's memory and on the socket only.
/// </summary>
public sealed record HandoffInstance(string Mountpoint, string FsType, string Source, string Config,
    IReadOnlyList<string>? PrefetchFiles, int VfsIndex);

/// <summary>
/// One NBD export of the block service, as recorded (image, its whole config text, the bound address), so a
/// successor serves it again without reading the journal. Secrets in <see cref="Config"/> stay in the supervisor's
/// memory and on the socket, as with <see cref="HandoffInstance.Config"/>.
/// </summary>
public sealed record HandoffBlockExport(string Name, string Source, string Config, string? Mountpoint, string Address);

/// <summary>
/// An fscache singleton's cache (issue 18 item 4): the state travels with the <c>/dev/cachefiles</c> descriptor
/// instead of /dev/fuse, so a successor refuses a state for another cache directory or tag, and a FUSE daemon
/// refuses it altogether. The open objects do not travel: their anonymous fds die with the old process, and the
/// kernel re-opens an object with a new OPEN when it is read again.
/// </summary>
public sealed record HandoffFscache(string CacheDir, string? Tag);

/// <summary>One open file/directory handle the kernel holds: the handle number and what it refers to.</summary>
public sealed record HandoffHandle(ulong Handle, ulong NodeId, bool Directory, string? HostPath);

/// <summary>
/// Our handoff document (upstream's <c>FusedevBackendState</c> by content, not by encoding): the mount table, the
/// negotiated FUSE INIT, the connection id and the handle table. Encoded as a text header
/// <c>NYDUS-HANDOFF v&lt;version&gt; sha256:&lt;hex&gt;</c>, a newline, then UTF-8 JSON; the checksum covers the JSON.
/// It is not upstream's dbs-snapshot binary encoding: an upgrade between upstream nydusd and ours is not supported.
/// </summary>
/// <param name="KernelMountpoint">Where the kernel mount is, so a successor refuses a state meant for another mount
/// (added after v1's first shape; null when absent).</param>
/// <param name="Instances">The whole mount table, the command line's instance included (added later; null from a
/// predecessor that did not send it, whose successor then restores the table from the journal).</param>
/// <param name="BlobEntries">The blob cache manager's bootstrap entries as added (upstream's <c>blob_entry_list</c>;
/// added later; null from a predecessor that did not send them, whose successor keeps what the journal recorded).</param>
/// <param name="BlockExports">The block service's NBD exports (added later; null from a predecessor that did not
/// send them, whose successor restores its exports from the journal).</param>
/// <param name="Fscache">Set when the descriptor is an fscache singleton's <c>/dev/cachefiles</c> (added later).</param>
public sealed record HandoffState(ulong FuseConnId, FuseInitState? FuseInit, IReadOnlyList<HandoffMount> Mounts,
    IReadOnlyList<HandoffHandle> Handles, string DaemonId, string? KernelMountpoint = null,
    IReadOnlyList<HandoffInstance>? Instances = null, IReadOnlyList<string>? BlobEntries = null,
    IReadOnlyList<HandoffBlockExport>? BlockExports = null, HandoffFscache? Fscache = null)
{
    public const int CurrentVersion = 1;
    private const string Magic = "NYDUS-HANDOFF";

    public byte[] Encode()
    {
        byte[] body = JsonSerializer.SerializeToUtf8Bytes(this, HandoffStateJson.Default.HandoffState);
        string header = $"{Magic} v{CurrentVersion} sha256:{Convert.ToHexStringLower(SHA256.HashData(body))}\n";
        return [.. Encoding.ASCII.GetBytes(header), .. body];
    }

    /// <summary>Decodes and verifies a document; every failure is an <see cref="UpgradeErrorKind.CorruptState"/> naming what is wrong.</summary>
    public static HandoffState Decode(ReadOnlySpan<byte> bytes)
    {
        int newline = bytes.IndexOf((byte)'\n');
        if (newline < 0 || newline > 200)
        {
            throw Corrupt($"handoff state ({bytes.Length} bytes) has no '{Magic}' header line");
        }

        string[] parts = Encoding.ASCII.GetString(bytes[..newline]).Split(' ');
        if (parts.Length != 3 || parts[0] != Magic)
        {
            throw Corrupt($"handoff state header is not '{Magic} v<n> sha256:<hex>'");
        }

        if (parts[1] != $"v{CurrentVersion}")
        {
            throw Corrupt($"handoff state version '{parts[1]}' is not supported (this daemon reads v{CurrentVersion})");
        }

        ReadOnlySpan<byte> body = bytes[(newline + 1)..];
        string actual = "sha256:" + Convert.ToHexStringLower(SHA256.HashData(body));
        if (!string.Equals(actual, parts[2], StringComparison.Ordinal))
        {
            throw Corrupt($"handoff state checksum mismatch: header says {parts[2]}, {body.Length} body bytes hash to {actual}");
        }

        HandoffState? state;
        try
        {
            state = JsonSerializer.Deserialize(body, HandoffStateJson.Default.HandoffState);
        }
        catch (JsonException e)
        {
            throw Corrupt($"handoff state JSON is invalid: {e.Message}", e);
        }

        if (state?.Mounts is null || state.Handles is null)
        {
            throw Corrupt("handoff state lacks its mount table or handle table");
        }

        return state;
    }

    private static UpgradeException Corrupt(string message, Exception? inner = null) =>
        new(UpgradeErrorKind.CorruptState, message, inner);
}

/// <summary>
/// The handoff document's JSON, generated at build time: a successor decodes the state on the takeover's critical
/// path, and reflection-based System.Text.Json spent tens of milliseconds there building its metadata for these
/// types on first use (cold in every new process). Same names and rules as before: snake_case, nulls left out.
/// </summary>
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(HandoffState))]
internal sealed partial class HandoffStateJson : JsonSerializerContext;
