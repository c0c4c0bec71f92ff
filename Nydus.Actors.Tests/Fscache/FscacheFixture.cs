using System.Text.Json.Nodes;
using Nydus.Actors.Api;
using Nydus.Actors.Tests.Block;
using Nydus.Actors.Tests.Support;
using Xunit;

namespace Nydus.Actors.Tests.Fscache;

/// <summary>What the fscache tests share: the upstream RAFS v6 fixture as the kernel must read it back, and the
/// blob entries they add with <c>PUT /api/v2/blobs</c>.</summary>
internal static class FscacheFixture
{
    /// <summary>The bootstrap object: the bootstrap file as it is.</summary>
    public static byte[] Bootstrap => File.ReadAllBytes(UpstreamBlockImage.Bootstrap);

    /// <summary>The data blob object: the blob's uncompressed form, 9 blocks (MANIFEST.md §V6).</summary>
    public static byte[] DataObject => UpstreamBlockImage.ExpectedDevice.AsSpan(512 * 4096, 9 * 4096).ToArray();

    /// <summary>A bootstrap entry whose blobs are read from the fixture's localfs directory.</summary>
    public static string LocalEntry(string domain, string id, string bootstrap, string workDir) => Entry(domain, id, bootstrap,
        new JsonObject { ["type"] = "localfs", ["localfs"] = new JsonObject { ["dir"] = UpstreamBlockImage.BlobDir } },
        new JsonObject { ["type"] = "fscache", ["fscache"] = new JsonObject { ["work_dir"] = workDir } });

    /// <summary>A bootstrap entry (<c>PUT /api/v2/blobs</c>) with the given backend and cache sections.</summary>
    /// <param name="devices">The entry's <c>devices</c>: blob ids of a plain EROFS image's untagged device slots.</param>
    public static string Entry(string domain, string id, string bootstrap, JsonObject backend, JsonObject cache, JsonArray? devices = null)
    {
        var entry = new JsonObject
        {
            ["type"] = "bootstrap",
            ["id"] = id,
            ["domain_id"] = domain,
            ["config_v2"] = new JsonObject
            {
                ["version"] = 2,
                ["id"] = id,
                ["backend"] = backend,
                ["cache"] = cache,
                ["metadata_path"] = bootstrap,
            },
        };
        if (devices is not null) entry["devices"] = devices;
        return entry.ToJsonString();
    }

    public static async Task AddAsync(string apiSocket, string entry, TimeSpan wait)
    {
        using var api = new ApiClient(apiSocket, wait);
        var (status, body) = await api.SendAsync("PUT", "/api/v2/blobs", entry);
        Assert.True(status == 204, $"PUT /api/v2/blobs answered {status} {body}");
    }
}
