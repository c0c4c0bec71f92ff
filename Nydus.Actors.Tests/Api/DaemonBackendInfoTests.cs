using System.Buffers.Binary;
using System.Text.Json;
using Nydus.Actors.Tests.Mounts;
using Nydus.Actors.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace Nydus.Actors.Tests.Api;

/// <summary>
/// GET /api/v1/daemon/backend against a real nydusd: the superblock meta of the RAFS instance at a mountpoint, as
/// upstream's export_backend_info serializes RafsSuperMeta. Expected values are read from the fixtures' bytes here
/// (offsets of rafs.md), not from the daemon's parser.
/// </summary>
public sealed class DaemonBackendInfoTests(ITestOutputHelper output)
{
    private static string LocalfsConfig(string blobDir) =>
        "{\"version\":2,\"backend\":{\"type\":\"localfs\",\"localfs\":{\"dir\":" + NydusdMount.Json(blobDir)
        + "}},\"cache\":{\"type\":\"dummycache\"},\"rafs\":{\"mode\":\"direct\"}}";

    private async Task<JsonElement> GetMetaAsync(NydusdApiDaemon daemon, string mountpoint)
    {
        var (status, body) = await daemon.Api.SendAsync("GET", "/api/v1/daemon/backend?mountpoint=" + Uri.EscapeDataString(mountpoint));
        output.WriteLine($"{mountpoint}: {status} {body}");
        Assert.Equal(200, status);
        return JsonDocument.Parse(body).RootElement.Clone();
    }

    private async Task ExpectErrorAsync(NydusdApiDaemon daemon, string query, int status, string mention)
    {
        var (got, body) = await daemon.Api.SendAsync("GET", "/api/v1/daemon/backend" + query);
        output.WriteLine($"{query}: {got} {body}");
        Assert.Equal(status, got);
        Assert.Contains(mention, JsonDocument.Parse(body).RootElement.GetProperty("message").GetString());
    }

    [FuseFact]
    public async Task The_superblock_of_a_v5_and_a_v6_image_is_served_and_bad_queries_get_clear_errors()
    {
        using var dir = new TempDir("dbinfo");
        var v5 = ImageFixtures.UpstreamFile("repeatable", "sha256-nocompress-repeatable");
        var v6 = ImageFixtures.UpstreamFile("bootstrap", "rafs-v6-2.2.boot");
        var shared = dir.Combine("shared");
        Directory.CreateDirectory(shared);
        await using var daemon = await NydusdApiDaemon.StartAsync(dir, "dbinfo-" + Guid.NewGuid().ToString("N")[..8]);
        Assert.Equal(204, (await daemon.MountAsync("/v5", v5, LocalfsConfig(ImageFixtures.UpstreamFile("repeatable", "blobs")))).Status);
        Assert.Equal(204, (await daemon.MountAsync("/v6", v6, LocalfsConfig(ImageFixtures.UpstreamFile("blobs")))).Status);
        Assert.Equal(204, (await daemon.MountAsync("/p", shared, "", fsType: "passthrough_fs")).Status);

        // RAFS v5: the superblock's fields at their offsets (rafs.md 1.2).
        byte[] sb = File.ReadAllBytes(v5).AsSpan(0, 8192).ToArray();
        var meta = await GetMetaAsync(daemon, "/v5");
        Assert.Equal(0x52414653u, meta.GetProperty("magic").GetUInt32());
        Assert.Equal(0x500u, meta.GetProperty("version").GetUInt32());
        Assert.Equal(8192u, meta.GetProperty("sb_size").GetUInt32());
        Assert.Equal(1u << 20, meta.GetProperty("chunk_size").GetUInt32());
        Assert.Equal(0x9UL, meta.GetProperty("flags").GetProperty("bits").GetUInt64());
        Assert.Equal(BinaryPrimitives.ReadUInt64LittleEndian(sb.AsSpan(24)), meta.GetProperty("inodes_count").GetUInt64());
        Assert.Equal(BinaryPrimitives.ReadUInt64LittleEndian(sb.AsSpan(32)), meta.GetProperty("inode_table_offset").GetUInt64());
        Assert.Equal(BinaryPrimitives.ReadUInt64LittleEndian(sb.AsSpan(40)), meta.GetProperty("prefetch_table_offset").GetUInt64());
        Assert.Equal(BinaryPrimitives.ReadUInt64LittleEndian(sb.AsSpan(48)), meta.GetProperty("blob_table_offset").GetUInt64());
        Assert.Equal(BinaryPrimitives.ReadUInt32LittleEndian(sb.AsSpan(56)), meta.GetProperty("inode_table_entries").GetUInt32());
        Assert.Equal(BinaryPrimitives.ReadUInt32LittleEndian(sb.AsSpan(60)), meta.GetProperty("prefetch_table_entries").GetUInt32());
        Assert.Equal(BinaryPrimitives.ReadUInt32LittleEndian(sb.AsSpan(64)), meta.GetProperty("blob_table_size").GetUInt32());
        Assert.Equal(BinaryPrimitives.ReadUInt32LittleEndian(sb.AsSpan(68)), meta.GetProperty("extended_blob_table_entries").GetUInt32());
        Assert.Equal(BinaryPrimitives.ReadUInt64LittleEndian(sb.AsSpan(72)), meta.GetProperty("extended_blob_table_offset").GetUInt64());
        // What upstream leaves at its defaults.
        Assert.Equal(0UL, meta.GetProperty("root_inode").GetUInt64());
        Assert.Equal(1UL << 32, meta.GetProperty("attr_timeout").GetProperty("secs").GetUInt64());
        Assert.Equal(0u, meta.GetProperty("entry_timeout").GetProperty("nanos").GetUInt32());
        Assert.False(meta.GetProperty("is_chunk_dict").GetBoolean());

        // RAFS v6: the EROFS superblock at 1024 and the RAFS extension at 1152.
        byte[] image = File.ReadAllBytes(v6);
        meta = await GetMetaAsync(daemon, "/v6");
        var erofs = image.AsSpan(1024, 128);
        Assert.Equal(0xE0F5E1E2u, meta.GetProperty("magic").GetUInt32());
        Assert.Equal(0x600u, meta.GetProperty("version").GetUInt32());
        Assert.Equal(0u, meta.GetProperty("sb_size").GetUInt32());
        Assert.Equal(1u << 20, meta.GetProperty("chunk_size").GetUInt32());
        Assert.Equal(BinaryPrimitives.ReadUInt16LittleEndian(erofs[14..]), meta.GetProperty("root_nid").GetUInt16());
        Assert.Equal(BinaryPrimitives.ReadUInt64LittleEndian(erofs[16..]), meta.GetProperty("inodes_count").GetUInt64());
        Assert.Equal(BinaryPrimitives.ReadUInt32LittleEndian(erofs[40..]), meta.GetProperty("meta_blkaddr").GetUInt32());
        Assert.NotEqual(0UL, meta.GetProperty("flags").GetProperty("bits").GetUInt64());
        Assert.NotEqual(0UL, meta.GetProperty("blob_table_offset").GetUInt64());

        await ExpectErrorAsync(daemon, "?mountpoint=/p", 400, "no RAFS superblock");
        await ExpectErrorAsync(daemon, "?mountpoint=/nothing", 404, "nothing is mounted at /nothing");
        await ExpectErrorAsync(daemon, "", 400, "mountpoint");
        // Served now (was 501), as the backend and blob cache metrics, which other endpoints serve.
        foreach (var path in new[] { "/api/v1/metrics/backend", "/api/v1/metrics/blobcache" })
            Assert.NotEqual(501, (await daemon.Api.SendAsync("GET", path + "?id=/v5")).Status);
        Assert.False(daemon.Process.HasExited);
    }
}
