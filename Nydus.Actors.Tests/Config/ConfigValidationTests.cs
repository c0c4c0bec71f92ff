using Nydus.Actors.Config;
using Xunit;

namespace Nydus.Actors.Tests.Config;

/// <summary>Every rule of the ConfigV2 validity table, each failing with its kind and a message naming the field.</summary>
public sealed class ConfigValidationTests
{
    public static TheoryData<string, ConfigErrorKind, string> InvalidDocuments => new()
    {
        { """{"version":3}""", ConfigErrorKind.InvalidVersion, "version: must be 2, found 3" },
        { """{"version":2,"backend":{"type":"ftp"}}""", ConfigErrorKind.UnknownBackendType, "backend.type: unknown backend type 'ftp'" },
        { """{"version":2,"backend":{"type":""}}""", ConfigErrorKind.UnknownBackendType, "backend.type: unknown backend type ''" },
        { """{"version":2,"backend":{"type":"LocalFs","localfs":{"dir":"/d"}}}""", ConfigErrorKind.UnknownBackendType, "backend.type: unknown backend type 'LocalFs'" },
        { """{"version":2,"backend":{"type":"localfs"}}""", ConfigErrorKind.InvalidBackend, "backend.localfs: section is required by backend type 'localfs'" },
        { """{"version":2,"backend":{"type":"localfs","localfs":{}}}""", ConfigErrorKind.InvalidBackend, "backend.localfs: either blob_file or dir must be set" },
        { """{"version":2,"backend":{"type":"localfs","localfs":{"alt_dirs":["/a"]}}}""", ConfigErrorKind.InvalidBackend, "backend.localfs: either blob_file or dir must be set" },
        { """{"version":2,"backend":{"type":"localdisk","localdisk":{}}}""", ConfigErrorKind.InvalidBackend, "backend.localdisk.device_path: must not be empty" },
        { """{"version":2,"backend":{"type":"localdisk"}}""", ConfigErrorKind.InvalidBackend, "backend.localdisk: section is required" },
        { """{"version":2,"backend":{"type":"oss","oss":{"endpoint":"","bucket_name":"b"}}}""", ConfigErrorKind.InvalidBackend, "backend.oss.endpoint: must not be empty" },
        { """{"version":2,"backend":{"type":"oss","oss":{"endpoint":"e","bucket_name":""}}}""", ConfigErrorKind.InvalidBackend, "backend.oss.bucket_name: must not be empty" },
        { """{"version":2,"backend":{"type":"s3","s3":{"endpoint":"","region":"","bucket_name":"b"}}}""", ConfigErrorKind.InvalidBackend, "backend.s3.region: must not be empty" },
        { """{"version":2,"backend":{"type":"s3","s3":{"endpoint":"","region":"r","bucket_name":""}}}""", ConfigErrorKind.InvalidBackend, "backend.s3.bucket_name: must not be empty" },
        { """{"version":2,"backend":{"type":"registry","registry":{"host":"","repo":"r"}}}""", ConfigErrorKind.InvalidBackend, "backend.registry.host: must not be empty" },
        { """{"version":2,"backend":{"type":"registry","registry":{"host":"h","repo":""}}}""", ConfigErrorKind.InvalidBackend, "backend.registry.repo: must not be empty" },
        { """{"version":2,"backend":{"type":"registry","oss":{"endpoint":"e","bucket_name":"b"}}}""", ConfigErrorKind.InvalidBackend, "backend.registry: section is required by backend type 'registry'" },
        { """{"version":2,"backend":{"type":"http-proxy","http-proxy":{"addr":""}}}""", ConfigErrorKind.InvalidBackend, "backend.http-proxy.addr: must be an http:// or https:// URL" },
        { """{"version":2,"backend":{"type":"http-proxy","http-proxy":{"addr":"ftp://x"}}}""", ConfigErrorKind.InvalidBackend, "backend.http-proxy.addr" },
        { """{"version":2,"backend":{"type":"http-proxy","http-proxy":{"addr":"/nonexistent/nydus-test.sock"}}}""", ConfigErrorKind.InvalidBackend, "backend.http-proxy.addr" },
        { """{"version":2,"backend":{"type":"http-proxy","http-proxy":{"addr":"relative.sock"}}}""", ConfigErrorKind.InvalidBackend, "backend.http-proxy.addr" },
        { """{"version":2,"cache":{"type":"memcache"}}""", ConfigErrorKind.UnknownCacheType, "cache.type: unknown cache type 'memcache'" },
        { """{"version":2,"cache":{"type":"dummy"}}""", ConfigErrorKind.UnknownCacheType, "cache.type: unknown cache type 'dummy'" },
        { """{"version":2,"cache":{"type":"blobcache"}}""", ConfigErrorKind.InvalidCache, "cache.filecache: section is required by cache type 'blobcache'" },
        { """{"version":2,"cache":{"type":"filecache","fscache":{"work_dir":"/w"}}}""", ConfigErrorKind.InvalidCache, "cache.filecache: section is required by cache type 'filecache'" },
        { """{"version":2,"cache":{"type":"filecache","filecache":{"work_dir":""}}}""", ConfigErrorKind.InvalidCache, "cache.filecache.work_dir: must not be empty" },
        { """{"version":2,"cache":{"type":"fscache"}}""", ConfigErrorKind.InvalidCache, "cache.fscache: section is required by cache type 'fscache'" },
        { """{"version":2,"cache":{"type":"fscache","fscache":{"work_dir":""}}}""", ConfigErrorKind.InvalidCache, "cache.fscache.work_dir: must not be empty" },
        { """{"version":2,"cache":{"prefetch":{"enable":true,"threads":0}}}""", ConfigErrorKind.InvalidPrefetch, "cache.prefetch.threads: must be between 1 and 1024 when prefetch is enabled, found 0" },
        { """{"version":2,"cache":{"prefetch":{"enable":true,"threads":1025}}}""", ConfigErrorKind.InvalidPrefetch, "cache.prefetch.threads: must be between 1 and 1024" },
        { """{"version":2,"cache":{"prefetch":{"enable":true,"batch_size":268435457}}}""", ConfigErrorKind.InvalidPrefetch, "cache.prefetch.batch_size: must not exceed 268435456" },
        { """{"version":2,"rafs":{"prefetch":{"enable":true,"threads":0}}}""", ConfigErrorKind.InvalidPrefetch, "rafs.prefetch.threads" },
        { """{"version":2,"rafs":{"prefetch":{"enable":true,"batch_size":268435457}}}""", ConfigErrorKind.InvalidPrefetch, "rafs.prefetch.batch_size" },
        { """{"version":2,"rafs":{"mode":"lazy"}}""", ConfigErrorKind.InvalidRafs, "rafs.mode: must be 'direct' or 'cached', found 'lazy'" },
        { """{"version":2,"rafs":{"mode":"Direct"}}""", ConfigErrorKind.InvalidRafs, "rafs.mode" },
        { """{"version":2,"rafs":{"batch_size":268435457}}""", ConfigErrorKind.InvalidRafs, "rafs.batch_size: must not exceed 268435456 (0x10000000), found 268435457" },
    };

    [Theory]
    [MemberData(nameof(InvalidDocuments))]
    public void Invalid_document_fails_with_kind_and_field(string json, ConfigErrorKind kind, string messageStart)
    {
        var error = Assert.Throws<ConfigException>(() => NydusConfigLoader.Parse(json, "mount request for /sub"));

        Assert.Equal(kind, error.Kind);
        Assert.StartsWith(messageStart, error.Message, StringComparison.Ordinal);
        Assert.EndsWith("(in mount request for /sub)", error.Message, StringComparison.Ordinal);
    }

    public static TheoryData<string> ValidBoundaryDocuments => new()
    {
        """{"version":2,"cache":{"type":"dummycache"}}""",
        """{"version":2,"cache":{"type":""}}""",
        """{"version":2,"cache":{"prefetch":{"enable":true,"threads":1,"batch_size":268435456}}}""",
        """{"version":2,"cache":{"prefetch":{"enable":true,"threads":1024,"batch_size":0}}}""",
        // Limits apply only to enabled tables.
        """{"version":2,"cache":{"prefetch":{"enable":false,"threads":0,"batch_size":999999999999}}}""",
        """{"version":2,"rafs":{"mode":"cached","batch_size":268435456}}""",
        """{"version":2,"rafs":{"batch_size":0}}""",
        """{"version":2,"backend":{"type":"localfs","localfs":{"blob_file":"/b"}}}""",
        """{"version":2,"backend":{"type":"s3","s3":{"endpoint":"","region":"r","bucket_name":"b"}}}""",
        """{"version":2,"backend":{"type":"http-proxy","http-proxy":{"addr":"https://proxy"}}}""",
        // Only the section named by type is checked.
        """{"version":2,"backend":{"type":"localfs","localfs":{"dir":"/d"},"oss":{"endpoint":"","bucket_name":""}}}""",
    };

    [Theory]
    [MemberData(nameof(ValidBoundaryDocuments))]
    public void Boundary_document_is_accepted(string json)
    {
        Assert.NotNull(NydusConfigLoader.Parse(json, "test"));
    }

    [Fact]
    public void Http_proxy_address_may_be_an_existing_absolute_path()
    {
        using var temp = new TempDirectory();
        var socketPath = temp.WriteFile("proxy.sock", "");
        var json = """{"version":2,"backend":{"type":"http-proxy","http-proxy":{"addr":"SOCKET"}}}""".Replace("SOCKET", socketPath);

        Assert.Equal(socketPath, NydusConfigLoader.Parse(json, "test").Backend!.HttpProxy!.Addr);
    }

    [Fact]
    public void Failing_v2_document_does_not_fall_back_to_legacy()
    {
        // Binds as V2 (has version) and also carries a valid legacy body; upstream rejects it at once.
        var json = """
            {"version":2,"rafs":{"mode":"lazy"},
             "device":{"backend":{"type":"localfs","config":{"dir":"/d"}}},"mode":"direct"}
            """;

        var error = Assert.Throws<ConfigException>(() => NydusConfigLoader.Parse(json, "test"));

        Assert.Equal(ConfigErrorKind.InvalidRafs, error.Kind);
    }

    [Theory]
    [InlineData("""{"version":"2"}""", "version")]
    [InlineData("""{"version":2,"rafs":{"batch_size":-1}}""", "rafs.batch_size")]
    [InlineData("""{"version":2,"backend":{"type":"oss","oss":{"endpoint":"e","bucket_name":"b","retry_limit":256}}}""", "backend.oss.retry_limit")]
    [InlineData("""{"version":2,"backend":{"type":"oss","oss":{"endpoint":"e"}}}""", "bucket_name")]
    [InlineData("""{"version":2,"backend":{"type":"registry","registry":{"host":"h","repo":null}}}""", "backend.registry.repo")]
    [InlineData("""{"version":2,"rafs":null,"cache":{"prefetch":null}}""", "cache.prefetch")]
    [InlineData("""{"version":2,"backend":{"localfs":{"dir":"/d"}}}""", "type")]
    [InlineData("""{"version":2,"overlay":{"upper_dir":"/u"}}""", "work_dir")]
    [InlineData("""{"version":2,"external_backends":[{"type":"t","config":{}}]}""", "patch")]
    [InlineData("""{"version":2,"external_backends":[{"patch":{},"type":"t","config":{"k":1}}]}""", "external_backends")]
    [InlineData("""{"version":2,"version":2}""", "version")]
    public void Wrongly_typed_or_missing_required_key_is_malformed_and_named(string json, string field)
    {
        var error = Assert.Throws<ConfigException>(() => NydusConfigLoader.Parse(json, "test"));

        Assert.Equal(ConfigErrorKind.Malformed, error.Kind);
        Assert.Contains(field, error.Message);
    }

    [Theory]
    [InlineData("""{"version":2,"backend":{"type":"oss","oss":{"endpoint":"e"}}}""", "backend.oss: missing required key(s) 'bucket_name'")]
    [InlineData("""{"version":"2"}""", "version: wrong value type, expected an integer from 0 to 4294967295")]
    [InlineData("""{"version":2,"rafs":{"batch_size":-1}}""", "rafs.batch_size: wrong value type, expected a non-negative integer")]
    [InlineData("""{"version":2,"rafs":{"enable_xattr":"yes"}}""", "rafs.enable_xattr: wrong value type, expected true or false")]
    [InlineData("""{"version":2,"backend":{"type":"localfs","localfs":"/blobs"}}""", "backend.localfs: wrong value type, expected a table (JSON object)")]
    [InlineData("""{"version":2,"backend":{"type":"registry","registry":{"host":"h","repo":null}}}""", "backend.registry.repo: null is not allowed here")]
    public void Binding_errors_are_phrased_in_configuration_terms(string json, string expected)
    {
        var error = Assert.Throws<ConfigException>(() => NydusConfigLoader.Parse(json, "test"));

        Assert.Equal($"test: invalid version 2 configuration: {expected}", error.Message);
    }

    [Fact]
    public void Json_object_that_is_neither_form_says_so()
    {
        var error = Assert.Throws<ConfigException>(() => NydusConfigLoader.Parse("""{"mode":"direct"}""", "cfg.json"));

        Assert.Equal(ConfigErrorKind.Malformed, error.Kind);
        Assert.Equal("cfg.json: neither a version 2 configuration (no 'version' key) nor a legacy configuration (no 'device' key)", error.Message);
    }

    [Theory]
    [InlineData("[]")]
    [InlineData("null")]
    [InlineData("2")]
    public void Json_that_is_not_an_object_is_malformed(string json)
    {
        var error = Assert.Throws<ConfigException>(() => NydusConfigLoader.Parse(json, "test"));

        Assert.Equal(ConfigErrorKind.Malformed, error.Kind);
    }

    [Fact]
    public void Text_that_is_neither_json_nor_toml_reports_both()
    {
        var error = Assert.Throws<ConfigException>(() => NydusConfigLoader.Parse("foo-bar-xxxx\n", "cfg"));

        Assert.Equal(ConfigErrorKind.Malformed, error.Kind);
        Assert.StartsWith("cfg: neither JSON (", error.Message, StringComparison.Ordinal);
        Assert.Contains("nor TOML (", error.Message);
    }

    [Fact]
    public void Json_with_trailing_comma_or_comment_is_rejected_like_serde()
    {
        Assert.Throws<ConfigException>(() => NydusConfigLoader.Parse("""{"version":2,}""", "test"));
        Assert.Throws<ConfigException>(() => NydusConfigLoader.Parse("{\"version\":2 // two\n}", "test"));
    }
}
