using System.Text.Json.Serialization;

namespace Nydus.Actors.Rafs;

/// <summary>
/// The superblock facts of an open image as upstream's <c>RafsSuperMeta</c> (rafs/src/metadata/mod.rs) holds them,
/// field for field: what <c>GET /api/v1/daemon/backend</c> answers. Values upstream never fills in stay as it leaves
/// them: <c>root_inode</c> and <c>batch_size</c> 0, <c>sb_size</c> 0 for v6, both timeouts 2^32 s, <c>is_chunk_dict</c>
/// false. A plain EROFS image (which upstream does not mount as RAFS) reports its EROFS superblock with version 0.
/// </summary>
public sealed record RafsSuperMeta
{
    /// <summary>Upstream's RAFS_DEFAULT_ATTR_TIMEOUT / RAFS_DEFAULT_ENTRY_TIMEOUT (1 &lt;&lt; 32 seconds).</summary>
    public static readonly RafsDuration DefaultTimeout = new(1UL << 32, 0);

    [JsonPropertyName("magic")] public uint Magic { get; init; }
    [JsonPropertyName("version")] public uint Version { get; init; }
    [JsonPropertyName("sb_size")] public uint SbSize { get; init; }
    [JsonPropertyName("root_inode")] public ulong RootInode { get; init; }
    [JsonPropertyName("chunk_size")] public uint ChunkSize { get; init; }
    [JsonPropertyName("batch_size")] public uint BatchSize { get; init; }
    [JsonPropertyName("inodes_count")] public ulong InodesCount { get; init; }
    [JsonPropertyName("flags")] public RafsFlagBits Flags { get; init; } = new(0);
    [JsonPropertyName("inode_table_entries")] public uint InodeTableEntries { get; init; }
    [JsonPropertyName("inode_table_offset")] public ulong InodeTableOffset { get; init; }
    [JsonPropertyName("blob_table_size")] public uint BlobTableSize { get; init; }
    [JsonPropertyName("blob_table_offset")] public ulong BlobTableOffset { get; init; }
    [JsonPropertyName("extended_blob_table_offset")] public ulong ExtendedBlobTableOffset { get; init; }
    [JsonPropertyName("extended_blob_table_entries")] public uint ExtendedBlobTableEntries { get; init; }
    [JsonPropertyName("blob_device_table_count")] public uint BlobDeviceTableCount { get; init; }
    [JsonPropertyName("blob_device_table_offset")] public ulong BlobDeviceTableOffset { get; init; }
    [JsonPropertyName("prefetch_table_offset")] public ulong PrefetchTableOffset { get; init; }
    [JsonPropertyName("prefetch_table_entries")] public uint PrefetchTableEntries { get; init; }
    [JsonPropertyName("attr_timeout")] public RafsDuration AttrTimeout { get; init; } = DefaultTimeout;
    [JsonPropertyName("entry_timeout")] public RafsDuration EntryTimeout { get; init; } = DefaultTimeout;
    [JsonPropertyName("is_chunk_dict")] public bool IsChunkDict { get; init; }
    [JsonPropertyName("meta_blkaddr")] public uint MetaBlkaddr { get; init; }
    [JsonPropertyName("root_nid")] public ushort RootNid { get; init; }
    [JsonPropertyName("chunk_table_offset")] public ulong ChunkTableOffset { get; init; }
    [JsonPropertyName("chunk_table_size")] public ulong ChunkTableSize { get; init; }
}

/// <summary>Superblock flags as upstream's bitflags 1.x serialize them: <c>{"bits": n}</c>.</summary>
public sealed record RafsFlagBits([property: JsonPropertyName("bits")] ulong Bits);

/// <summary>A Rust <c>Duration</c> as serde writes it.</summary>
public sealed record RafsDuration([property: JsonPropertyName("secs")] ulong Secs, [property: JsonPropertyName("nanos")] uint Nanos);
