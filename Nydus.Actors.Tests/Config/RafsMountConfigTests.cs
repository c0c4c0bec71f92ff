using Nydus.Actors.Config;
using Xunit;

namespace Nydus.Actors.Tests.Config;

/// <summary>What a RAFS mount needs beyond a valid document.</summary>
public sealed class RafsMountConfigTests
{
    private const string Complete = """
        {"version":2,"backend":{"type":"localfs","localfs":{"dir":"/b"}},
         "cache":{"type":"blobcache","filecache":{"work_dir":"/c"}},"rafs":{"mode":"direct"}}
        """;

    [Fact]
    public void Complete_config_yields_its_sections()
    {
        var mount = RafsMountConfig.From(NydusConfigLoader.Parse(Complete, "t"), isRafsV6: true, "t");

        Assert.Equal("/b", mount.Backend.LocalFs!.Dir);
        Assert.Equal("/c", mount.Cache.FileCache!.WorkDir);
        Assert.Equal("direct", mount.Rafs.Mode);
        Assert.Null(mount.Overlay);
    }

    [Theory]
    [InlineData("""{"version":2,"cache":{},"rafs":{}}""", "backend:")]
    [InlineData("""{"version":2,"backend":{"type":"localfs","localfs":{"dir":"/b"}},"rafs":{}}""", "cache:")]
    [InlineData("""{"version":2,"backend":{"type":"localfs","localfs":{"dir":"/b"}},"cache":{}}""", "rafs:")]
    [InlineData("""{"version":2,"backend":{"type":"localfs","localfs":{"dir":"/b"}},"cache":{},"rafs":{},"overlay":{"upper_dir":"/u","work_dir":""}}""", "overlay:")]
    public void Missing_section_is_named(string json, string field)
    {
        var config = NydusConfigLoader.Parse(json, "t");

        var error = Assert.Throws<ConfigException>(() => RafsMountConfig.From(config, isRafsV6: false, "t"));

        Assert.Equal(ConfigErrorKind.MissingForMount, error.Kind);
        Assert.StartsWith(field, error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("")]
    [InlineData("dummycache")]
    public void Rafs_v6_needs_a_file_cache_but_v5_does_not(string cacheType)
    {
        var parsed = NydusConfigLoader.Parse(Complete, "t");
        var config = parsed with { Cache = parsed.Cache! with { Type = cacheType } };

        Assert.NotNull(RafsMountConfig.From(config, isRafsV6: false, "t"));
        var error = Assert.Throws<ConfigException>(() => RafsMountConfig.From(config, isRafsV6: true, "t"));
        Assert.Equal(ConfigErrorKind.UnsupportedForImage, error.Kind);
        Assert.StartsWith("cache.type: RAFS v6 needs a local blobcache or filecache", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Rafs_v6_refuses_digest_validation()
    {
        var parsed = NydusConfigLoader.Parse(Complete, "t");
        var config = parsed with { Rafs = parsed.Rafs! with { Validate = true } };

        var error = Assert.Throws<ConfigException>(() => RafsMountConfig.From(config, isRafsV6: true, "t"));

        Assert.Equal(ConfigErrorKind.UnsupportedForImage, error.Kind);
        Assert.StartsWith("rafs.validate:", error.Message, StringComparison.Ordinal);
        Assert.NotNull(RafsMountConfig.From(config, isRafsV6: false, "t"));
    }
}
