using Nydus.Actors.Config;
using Xunit;

namespace Nydus.Actors.Tests.Config;

/// <summary>
/// Example documents from upstream nydus (misc/configs, docs/nydusd.md, api/src/config.rs tests), shortened, parse
/// or fail exactly as they do upstream.
/// </summary>
public sealed class UpstreamExampleTests
{
    /// <summary>misc/configs/nydusd-config-v2.toml, comments dropped, typos (<c>registy</c>) and stray keys kept.</summary>
    private const string SampleV2Toml = """
        version = 2
        id = "my_id"

        [backend]
        type = "localfs"

        [backend.localfs]
        blob_file = "/tmp/nydus.blob.data"
        dir = "/tmp"
        alt_dirs = ["/var/nydus/cache"]

        [backend.oss]
        scheme = "http"
        endpoint = "my_endpoint"
        bucket_name = "my_bucket_name"
        object_prefix = "my_object_prefix"
        access_key_id = "my_access_key_id"
        access_key_secret = "my_access_key_secret"
        skip_verify = true
        timeout = 10
        connect_timeout = 10
        retry_limit = 5

        [backend.oss.proxy]
        url = "localhost:6789"
        ping_url = "localhost:6789/ping"
        fallback = true
        check_interval = 5
        use_http = false

        [backend.registy]
        scheme = "https"
        host = "my.registry.com"
        repo = "nydus"
        auth = "base64_encoded"

        [cache]
        type = "filecache"
        compressed = true
        validate = true
        enable_encryption = true
        encryption_key = "fc4a7db5614afc2f400e9478bebed1aefdbc9d7cd03210b84f144683a7a6fd1a"

        [cache.filecache]
        work_dir = "."

        [cache.fscache]
        work_dir = "."

        [cache.prefetch]
        enable = true
        threads = 8
        batch_size = 1000000
        bandwidth_limit = 10000000

        [rafs]
        mode = "direct"
        batch_size = 1000000
        validate = true
        enable_xattr = true
        iostats_files = false
        access_pattern = false
        latest_read_files = false

        [rafs.prefetch]
        enable = true
        threads = 8
        batch_size = 1000000
        bandwidth_limit = 10000000
        prefetch_all = true
        """;

    [Fact]
    public void Sample_v2_toml_parses()
    {
        var config = NydusConfigLoader.Parse(SampleV2Toml, "nydusd-config-v2.toml");

        Assert.Equal("my_id", config.Id);
        Assert.Equal("localfs", config.Backend!.Type);
        Assert.Equal("/tmp/nydus.blob.data", config.Backend.LocalFs!.BlobFile);
        Assert.Equal(["/var/nydus/cache"], config.Backend.LocalFs.AltDirs);
        Assert.Equal(10u, config.Backend.Oss!.Timeout);
        Assert.Equal(5, config.Backend.Oss.RetryLimit);
        Assert.Equal("localhost:6789", config.Backend.Oss.Proxy.Url);
        Assert.Equal(300ul, config.Backend.Oss.Proxy.CheckPauseElapsed);
        Assert.Null(config.Backend.Registry); // the sample misspells it "registy"
        Assert.Equal("filecache", config.Cache!.Type);
        Assert.True(config.Cache.Validate);
        Assert.False(config.Cache.FileCache!.EnableEncryption); // set one level too high in the sample
        Assert.Equal(1_000_000ul, config.Cache.Prefetch.BatchSize);
        Assert.Equal(10_000_000u, config.Cache.Prefetch.BandwidthLimit);
        Assert.False(config.Cache.Prefetch.PrefetchAll);
        Assert.Equal(1_000_000ul, config.Rafs!.BatchSize);
        Assert.True(config.Rafs.Validate);
        Assert.True(config.Rafs.Prefetch.PrefetchAll);
        Assert.Equal(8ul, config.Rafs.Prefetch.Threads);
    }

    [Fact]
    public void Toml_that_fails_validation_is_rejected_with_the_field()
    {
        var version = Assert.Throws<ConfigException>(() => NydusConfigLoader.Parse("version=3\n", "v3.toml"));
        Assert.Equal(ConfigErrorKind.InvalidVersion, version.Kind);

        var cache = Assert.Throws<ConfigException>(() => NydusConfigLoader.Parse("version=2\n[cache]\ntype = \"bar\"\n", "bar.toml"));
        Assert.Equal(ConfigErrorKind.UnknownCacheType, cache.Kind);
        Assert.Equal("cache.type: unknown cache type 'bar' (expected blobcache, filecache, fscache, dummycache or empty) (in bar.toml)", cache.Message);
    }

    [Fact]
    public void Toml_with_wrong_value_type_names_the_key()
    {
        var error = Assert.Throws<ConfigException>(() => NydusConfigLoader.Parse("version=2\n[rafs]\nbatch_size = \"big\"\n", "t.toml"));

        Assert.Equal(ConfigErrorKind.Malformed, error.Kind);
        Assert.StartsWith("t.toml: invalid version 2 TOML configuration: rafs.batch_size:", error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("version = 2.0\n", "version: wrong value type, expected an integer from 0 to 4294967295")]
    [InlineData("version = 2\nid = 1979-05-27T07:32:00Z\n", "id: wrong value type, expected a string")]
    [InlineData("version = 2\n[rafs]\nbatch_size = nan\n", "rafs.batch_size: wrong value type, expected a non-negative integer")]
    public void Toml_floats_and_dates_do_not_bind_to_any_field(string toml, string expected)
    {
        var error = Assert.Throws<ConfigException>(() => NydusConfigLoader.Parse(toml, "t.toml"));

        Assert.Equal($"t.toml: invalid version 2 TOML configuration: {expected}", error.Message);
    }

    [Fact]
    public void Toml_floats_under_unknown_keys_are_ignored()
    {
        Assert.Equal(2u, NydusConfigLoader.Parse("version = 2\nratio = 0.5\n", "t.toml").Version);
    }

    [Fact]
    public void Toml_duplicate_key_is_rejected()
    {
        var error = Assert.Throws<ConfigException>(() => NydusConfigLoader.Parse("version = 2\nversion = 2\n", "t.toml"));

        Assert.Equal(ConfigErrorKind.Malformed, error.Kind);
        Assert.Contains("nor TOML (", error.Message);
    }

    [Fact]
    public void Toml_array_of_tables_binds_external_backends()
    {
        var config = NydusConfigLoader.Parse("version = 2\n[[external_backends]]\ntype = 't'\npatch = { id = 'x' }\nconfig = {}\n", "t.toml");

        var external = Assert.Single(config.ExternalBackends);
        Assert.Equal("t", external.Kind);
        Assert.Equal("x", external.Patch["id"]);
    }

    [Fact]
    public void Toml_without_version_is_rejected()
    {
        var error = Assert.Throws<ConfigException>(() => NydusConfigLoader.Parse("id = \"x\"\n", "t.toml"));

        Assert.Equal(ConfigErrorKind.Malformed, error.Kind);
        Assert.Contains("version", error.Message);
    }

    [Fact]
    public void Snapshotter_sample_legacy_config_parses()
    {
        // api/src/config.rs test_snapshotter_sample_config
        var config = NydusConfigLoader.Parse("""
            {
                "device": {
                    "backend": {
                        "type": "registry",
                        "config": {
                            "readahead": false,
                            "host": "localhost",
                            "repo": "vke/golang",
                            "auth": "",
                            "scheme": "https",
                            "proxy": { "fallback": false },
                            "timeout": 5,
                            "connect_timeout": 5,
                            "retry_limit": 2
                        }
                    },
                    "cache": {
                        "type": "blobcache",
                        "compressed": true,
                        "config": {
                            "work_dir": "/var/lib/containerd/io.containerd.snapshotter.v1.nydus/cache",
                            "disable_indexed_map": false
                        }
                    }
                },
                "mode": "direct",
                "digest_validate": false,
                "enable_xattr": true,
                "fs_prefetch": {
                    "enable": true,
                    "prefetch_all": true,
                    "threads_count": 8,
                    "merging_size": 1048576,
                    "bandwidth_rate": 0
                }
            }
            """, "snapshotter");

        Assert.Equal("", config.Id);
        Assert.Equal("localhost", config.Backend!.Registry!.Host);
        Assert.Equal("", config.Backend.Registry.Auth);
        Assert.False(config.Backend.Registry.Proxy.Fallback);
        Assert.Equal(2, config.Backend.Registry.RetryLimit);
        Assert.True(config.Cache!.Prefetch.Enable);
        Assert.True(config.Rafs!.EnableXattr);
    }

    [Fact]
    public void Sample_localfs_legacy_config_parses()
    {
        // api/src/config.rs test_sample_config_file
        var config = NydusConfigLoader.Parse("""
            {
                "device": {
                    "backend": { "type": "localfs", "config": { "dir": "/tmp/AM7TxD/blobs", "readahead": true } },
                    "cache": { "type": "blobcache", "compressed": true, "config": { "work_dir": "/tmp/AM7TxD/cache" } }
                },
                "mode": "cached",
                "digest_validate": true,
                "iostats_files": false
            }
            """, "sample");

        Assert.Equal("/tmp/AM7TxD/blobs", config.Backend!.LocalFs!.Dir);
        Assert.Equal("cached", config.Rafs!.Mode);
        Assert.True(config.Rafs.Validate);
    }

    [Fact]
    public void Misc_nydusd_config_json_is_rejected_for_lacking_registry_host_and_repo()
    {
        // misc/configs/nydusd-config.json omits the required host/repo keys, so upstream rejects it too.
        var error = Assert.Throws<ConfigException>(() => NydusConfigLoader.Parse("""
            {
              "device": {
                "backend": {"type": "registry", "config": {"timeout": 5, "connect_timeout": 5, "retry_limit": 2, "skip_verify": false, "ca_cert_files": ["/etc/ssl/certs/my-ca.pem"]}},
                "cache": {"type": "blobcache", "config": {"work_dir": "/var/lib/nydus/cache"}}
              },
              "mode": "direct",
              "digest_validate": false,
              "iostats_files": false,
              "enable_xattr": true,
              "fs_prefetch": {"enable": true, "threads_count": 8, "merging_size": 1048576, "prefetch_all": true}
            }
            """, "nydusd-config.json"));

        Assert.Equal(ConfigErrorKind.Malformed, error.Kind);
        Assert.StartsWith("device.backend.config:", error.Message, StringComparison.Ordinal);
        Assert.Contains("host", error.Message);
    }

    [Fact]
    public void Overlay_doc_example_is_rejected_because_localfs_is_a_string()
    {
        // docs/nydusd.md overlay example writes "localfs": "/var/lib/nydus/blobs"; serde refuses that as well.
        var error = Assert.Throws<ConfigException>(() => NydusConfigLoader.Parse("""
            {
                "version": 2,
                "backend": { "type": "localfs", "localfs": "/var/lib/nydus/blobs" },
                "cache": { "type": "blobcache", "filecache": { "work_dir": "/var/lib/nydus/cache" } },
                "rafs": { "mode": "direct", "enable_xattr": true },
                "overlay": { "upper_dir": "/path/to/upperdir", "work_dir": "/path/to/workdir" }
            }
            """, "overlay.json"));

        Assert.Equal(ConfigErrorKind.Malformed, error.Kind);
        Assert.StartsWith("overlay.json: invalid version 2 configuration: backend.localfs:", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Overlay_example_with_a_localfs_table_parses()
    {
        var config = NydusConfigLoader.Parse("""
            {
                "version": 2,
                "backend": { "type": "localfs", "localfs": { "dir": "/var/lib/nydus/blobs" } },
                "cache": { "type": "blobcache", "filecache": { "work_dir": "/var/lib/nydus/cache" } },
                "rafs": { "mode": "direct", "enable_xattr": true },
                "overlay": { "upper_dir": "/path/to/upperdir", "work_dir": "/path/to/workdir" }
            }
            """, "overlay.json");

        Assert.Equal("/path/to/upperdir", config.Overlay!.UpperDir);
        Assert.Equal("/path/to/workdir", config.Overlay.WorkDir);
        Assert.True(config.Rafs!.EnableXattr);
    }

    [Fact]
    public void Invalid_v2_binding_may_still_be_a_valid_legacy_document()
    {
        // Upstream tries legacy after V2 fails to bind; a document carrying both shapes loads as legacy.
        var config = NydusConfigLoader.Parse("""
            {"version":"two","device":{"backend":{"type":"localfs","config":{"dir":"/legacy"}}},"mode":"direct"}
            """, "test");

        Assert.Equal("/legacy", config.Backend!.LocalFs!.Dir);
    }
}
