using Nydus.Actors.Config;
using Nydus.Actors.Storage.Cache.Blobs;
using Xunit;

namespace Nydus.Actors.Tests.Storage.Cache;

/// <summary>Upstream's rules of the blob cache manager's state: keys, reference counts, domain removal.</summary>
public sealed class BlobCacheManagerStateTests
{
    private static BlobCacheEntry Bootstrap(string domain, string id, string workDir = "/tmp/w") =>
        BlobCacheEntry.Parse($$$"""
            {"type":"bootstrap","id":"{{{id}}}","domain_id":"{{{domain}}}","config_v2":{"version":2,
             "backend":{"type":"localfs","localfs":{"dir":"/tmp"}},
             "cache":{"type":"blobcache","filecache":{"work_dir":"{{{workDir}}}"}},"metadata_path":"/tmp/{{{id}}}.boot"}}
            """, "test");

    [Fact]
    public void Data_blobs_are_counted_per_domain_and_dropped_with_their_last_bootstrap()
    {
        var manager = new BlobCacheManager();
        Assert.True(manager.Add(Bootstrap("d1", "a"), "/tmp/a.boot", ["x", "y"]).Succeeded);
        Assert.True(manager.Add(Bootstrap("d1", "b"), "/tmp/b.boot", ["y"]).Succeeded);
        Assert.True(manager.Add(Bootstrap("d2", "a"), "/tmp/a.boot", ["y"]).Succeeded);
        Assert.Equal(2, manager.Get("d1", "y")!.References);
        Assert.Equal(1, manager.Get("d2", "y")!.References);
        Assert.Equal([("/tmp/w", "x"), ("/tmp/w", "y")], manager.BlobsInUse().Order());

        Assert.True(manager.Remove("d1", "a").Succeeded);
        Assert.Null(manager.Get("d1", "x"));
        Assert.Equal(1, manager.Get("d1", "y")!.References);

        Assert.Equal(BlobCacheErrorKind.NotFound, manager.Remove("d1", "a").Error);
        Assert.Equal(BlobCacheErrorKind.NotFound, manager.Remove("nope", "a").Error);
        Assert.True(manager.Remove("d1", "").Succeeded);
        Assert.Equal(["d2/a", "d2/y"], manager.List().Select(i => i.Key));
    }

    [Fact]
    public void A_bootstrap_key_is_taken_once_and_only_bootstraps_are_added()
    {
        var manager = new BlobCacheManager();
        Assert.True(manager.Add(Bootstrap("", "a"), "/tmp/a.boot", ["x"]).Succeeded);
        Assert.Equal("a", manager.List()[0].Key); // the default domain's keys are bare ids, as upstream's
        Assert.True(manager.Add(Bootstrap("", "a"), "/tmp/a.boot", ["x"]).Unchanged);
        Assert.Equal(BlobCacheErrorKind.AlreadyExists, manager.Add(Bootstrap("", "a", "/tmp/other"), "/tmp/a.boot", ["x"]).Error);
        Assert.Equal(BlobCacheErrorKind.AlreadyExists, manager.Add(Bootstrap("", "x"), "/tmp/x.boot", []).Error);
        var data = Bootstrap("", "b") with { Type = BlobCacheEntry.DataBlobType };
        Assert.Equal(BlobCacheErrorKind.Invalid, manager.Add(data, "/tmp/b.boot", []).Error);
        Assert.Equal(1, manager.Get("", "x")!.References);
    }

    [Theory]
    [InlineData("{\"type\":\"bootstrap\",\"id\":\"a/b\",\"config_v2\":{}}", "contains '/'")]
    [InlineData("{\"type\":\"bootstrap\",\"id\":\"a\",\"config_v2\":{\"version\":2,\"backend\":{\"type\":\"localfs\",\"localfs\":{\"dir\":\"/t\"}},\"cache\":{\"type\":\"dummycache\"}}}", "cannot hold blobs")]
    [InlineData("{\"type\":\"bootstrap\",\"id\":\"a\",\"config\":{\"backend_type\":\"nope\",\"cache_type\":\"blobcache\"}}", "nope")]
    [InlineData("{\"type\":\"bootstrap\",\"id\":7,\"config_v2\":{}}", "must be a string")]
    public void Bad_entries_are_refused_naming_the_field(string text, string expected)
    {
        var e = Assert.Throws<ConfigException>(() => BlobCacheEntry.Parse(text, "test"));
        Assert.Contains(expected, e.Message);
    }
}
