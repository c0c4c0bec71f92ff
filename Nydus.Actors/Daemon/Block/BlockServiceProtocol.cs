using System.Collections.Immutable;

namespace Nydus.Actors.Daemon.Block;

/// <summary>Messages of <see cref="BlockServiceActor"/> (the daemon actor forwards them).</summary>
public interface IBlockServiceMessage;

/// <summary>
/// Serve an image as an NBD export named <see cref="Name"/> on <see cref="Address"/> (an absolute Unix socket path,
/// or "IP:PORT" for TCP; port 0 picks one). The image is <see cref="Source"/> with <see cref="Config"/>, or the
/// instance mounted at <see cref="Mountpoint"/> (the daemon actor fills in its source and config on the way).
/// Answered with <see cref="BlockServiceResult"/>.
/// </summary>
public sealed record ExportBlockDevice(string Name, string? Source, string? Config, string? Mountpoint, string Address) : IBlockServiceMessage;

/// <summary>Stop serving an export: new clients no longer find it; clients already reading it keep their connection
/// until they disconnect (the device is closed after the last, <see cref="Nydus.Actors.Block.Nbd.NbdExportTable.Remove"/>).
/// The listener closes with the last export on its address.</summary>
public sealed record UnexportBlockDevice(string Name) : IBlockServiceMessage;

/// <summary>Answered with <see cref="BlockExportList"/>.</summary>
public sealed record ListBlockExports : IBlockServiceMessage
{
    public static readonly ListBlockExports Instance = new();
}

/// <summary>From the daemon actor once it runs: a successor's block service may now bind its listeners (its
/// predecessor has exited) and write the journal.</summary>
public sealed record BlockServiceMayServe : IBlockServiceMessage
{
    public static readonly BlockServiceMayServe Instance = new();
}

/// <summary>From the daemon actor for <c>sendfd</c>: the recorded exports, for the handoff state. Answered with
/// <see cref="BlockExportRecords"/> once the service knows its table (after its journal is read).</summary>
public sealed record GetBlockExportRecords : IBlockServiceMessage
{
    public static readonly GetBlockExportRecords Instance = new();
}

/// <summary>The answer to <see cref="GetBlockExportRecords"/>; default (not empty) when the service cannot know its
/// table (its journal is unreadable): the handoff state then leaves the exports out and a successor reads its journal.</summary>
public sealed record BlockExportRecords(ImmutableArray<Persistence.BlockExportRecord> Exports);

/// <summary>From the daemon actor at a takeover: the exports of the handoff state, which the service serves once the
/// daemon runs, without waiting for its journal to be read (what the journal recovers later is not used: the
/// predecessor's table is the truth).</summary>
public sealed record RestoreBlockExports(ImmutableArray<Persistence.BlockExportRecord> Exports) : IBlockServiceMessage;

public enum BlockErrorKind
{
    /// <summary>Bad name, address, config or image (400).</summary>
    Invalid,
    /// <summary>No such export, or no instance at the mountpoint (404).</summary>
    NotFound,
    /// <summary>The name is taken, or the address is in use by someone else (409).</summary>
    AlreadyExists,
    /// <summary>A successor before it runs: its predecessor still serves the exports (503).</summary>
    NotReady,
    /// <summary>The journal could not record the change; nothing changed (500, 507 for a full disk).</summary>
    Failed,
    InsufficientStorage,
}

/// <summary>One export as the API lists it.</summary>
/// <param name="State">"serving", "waiting" (a successor before it runs) or "failed" (restored from the journal
/// but not served: <see cref="Error"/> says why; it stays recorded until removed).</param>
public sealed record BlockExportInfo(string Name, string Source, string? Mountpoint, string Address, long Size, int Connections,
    string State, string? Error);

/// <summary>The answer to an export or unexport; <see cref="Export"/> is the new export's entry.</summary>
public sealed record BlockServiceResult(BlockErrorKind? Error, string Message, BlockExportInfo? Export = null)
{
    public bool Succeeded => Error is null;

    public static BlockServiceResult Fail(BlockErrorKind kind, string message) => new(kind, message);
}

/// <summary>The answer to <see cref="ListBlockExports"/>. <see cref="State"/>: "serving", "waiting" (a successor
/// before it runs), "recovering", "restoring", "unavailable" (its journal cannot be read: nothing served) or
/// "unrecorded" (a takeover's table served over a journal that cannot be read: changes are refused).</summary>
public sealed record BlockExportList(string State, ImmutableArray<BlockExportInfo> Exports);

/// <summary>A failure with its kind, thrown by the steps that open an image or bind an address.</summary>
public sealed class BlockServiceException(BlockErrorKind kind, string message, Exception? inner = null) : Exception(message, inner)
{
    public BlockErrorKind Kind { get; } = kind;
}
