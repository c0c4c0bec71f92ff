using System.Text.Json;
using Nydus.Actors.Config;
using Xunit;

namespace Nydus.Actors.Tests.Config;

/// <summary>API renderings never carry credentials, and the unredacted rendering round-trips.</summary>
public sealed class ConfigRedactionTests
{
    private const string Secrets = """
        {
          "version": 2,
          "id": "img",
          "backend": {
            "type": "registry",
            "registry": {"host": "reg.example", "repo": "lib/app", "auth": "SECRET-REGISTRY-AUTH", "registry_token": "SECRET-REGISTRY-TOKEN"},
            "oss": {"endpoint": "oss.example", "bucket_name": "bkt", "access_key_id": "SECRET-OSS-ID", "access_key_secret": "SECRET-OSS-KEY"},
            "s3": {"endpoint": "", "region": "eu", "bucket_name": "bkt", "access_key_id": "SECRET-S3-ID", "access_key_secret": "SECRET-S3-KEY"}
          },
          "cache": {"type": "blobcache", "filecache": {"work_dir": "/cache"}},
          "rafs": {"mode": "direct"}
        }
        """;

    [Fact]
    public void Redacted_json_contains_no_secret()
    {
        var config = NydusConfigLoader.Parse(Secrets, "test");

        var json = ConfigJson.SerializeWithoutSecrets(config);

        Assert.DoesNotContain("SECRET", json, StringComparison.Ordinal);
        Assert.Contains("reg.example", json, StringComparison.Ordinal);
        Assert.Contains("oss.example", json, StringComparison.Ordinal);
        using var document = JsonDocument.Parse(json);
        var backend = document.RootElement.GetProperty("backend");
        Assert.Equal(JsonValueKind.Null, backend.GetProperty("registry").GetProperty("auth").ValueKind);
        Assert.Equal(JsonValueKind.Null, backend.GetProperty("registry").GetProperty("registry_token").ValueKind);
        Assert.Equal("", backend.GetProperty("oss").GetProperty("access_key_secret").GetString());
        Assert.Equal("", backend.GetProperty("s3").GetProperty("access_key_id").GetString());
        Assert.Equal("", backend.GetProperty("s3").GetProperty("access_key_secret").GetString());
    }

    [Fact]
    public void Redaction_does_not_change_the_original()
    {
        var config = NydusConfigLoader.Parse(Secrets, "test");

        _ = config.WithoutSecrets();

        Assert.Equal("SECRET-REGISTRY-AUTH", config.Backend!.Registry!.Auth);
        Assert.Equal("SECRET-S3-KEY", config.Backend.S3!.AccessKeySecret);
    }

    [Fact]
    public void Image_pull_auth_override_is_also_redacted()
    {
        var config = NydusConfigLoader.Parse(Secrets, "test", imagePullAuth: "SECRET-FROM-ENV");

        Assert.Equal("SECRET-FROM-ENV", config.Backend!.Registry!.Auth);
        Assert.DoesNotContain("SECRET", ConfigJson.SerializeWithoutSecrets(config), StringComparison.Ordinal);
    }

    [Fact]
    public void Full_rendering_uses_upstream_names_and_parses_back_equal()
    {
        var config = NydusConfigLoader.Parse(Secrets, "test");

        var json = ConfigJson.Serialize(config);
        var reparsed = NydusConfigLoader.Parse(json, "round trip");

        Assert.Contains("\"http-proxy\":null", json, StringComparison.Ordinal);
        Assert.Contains("\"threads\":0", json, StringComparison.Ordinal);
        Assert.Equal("SECRET-REGISTRY-TOKEN", reparsed.Backend!.Registry!.RegistryToken);
        Assert.Equal("SECRET-S3-KEY", reparsed.Backend.S3!.AccessKeySecret);
        Assert.Equal(config.Rafs, reparsed.Rafs);
        Assert.Equal(config.Cache!.Prefetch, reparsed.Cache!.Prefetch);
        Assert.Equal(config.Cache.FileCache, reparsed.Cache.FileCache);
        Assert.Equal(json, ConfigJson.Serialize(reparsed));
    }

    [Fact]
    public void Config_without_backend_redacts_to_itself()
    {
        var config = NydusConfigLoader.Parse("""{"version":2}""", "test");

        Assert.Same(config, config.WithoutSecrets());
    }
}
