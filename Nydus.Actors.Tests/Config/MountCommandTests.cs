using System.Text.Json;
using Nydus.Actors.Config;
using Xunit;

namespace Nydus.Actors.Tests.Config;

/// <summary>fs_type spellings, virtual mountpoints and the mount command built from an API body.</summary>
public sealed class MountCommandTests
{
    [Theory]
    [InlineData("rafs", FsBackendType.Rafs)]
    [InlineData("passthrough", FsBackendType.PassthroughFs)]
    [InlineData("passthroughfs", FsBackendType.PassthroughFs)]
    [InlineData("passthrough_fs", FsBackendType.PassthroughFs)]
    public void Fs_type_spellings_parse(string text, FsBackendType expected)
    {
        Assert.Equal(expected, FsBackendTypes.Parse(text));
    }

    [Theory]
    [InlineData("")]
    [InlineData(null)]
    [InlineData("RAFS")]
    [InlineData("Rafs")]
    [InlineData("PassthroughFs")]
    [InlineData(" rafs")]
    [InlineData("erofs")]
    public void Other_fs_type_spellings_are_rejected(string? text)
    {
        var error = Assert.Throws<ConfigException>(() => FsBackendTypes.Parse(text));

        Assert.Equal(ConfigErrorKind.InvalidFsType, error.Kind);
        Assert.Equal($"fs_type: only 'rafs' and 'passthrough_fs' are supported, but '{text}' was specified", error.Message);
    }

    [Fact]
    public void Display_form_is_upstreams()
    {
        Assert.Equal("Rafs", FsBackendType.Rafs.ToDisplayString());
        Assert.Equal("PassthroughFs", FsBackendType.PassthroughFs.ToDisplayString());
        Assert.Equal("\"PassthroughFs\"", JsonSerializer.Serialize(FsBackendType.PassthroughFs));
    }

    [Theory]
    [InlineData("/")]
    [InlineData("/sub")]
    [InlineData("/a/b/c")]
    [InlineData("/snap-1/..x")]
    [InlineData("/.hidden")]
    public void Normalized_absolute_mountpoints_are_valid(string mountpoint)
    {
        Assert.Equal(mountpoint, VirtualMountpoint.Validate(mountpoint));
        Assert.True(VirtualMountpoint.IsValid(mountpoint));
    }

    [Theory]
    [InlineData(null, "it is empty")]
    [InlineData("", "it is empty")]
    [InlineData("sub", "it is not absolute")]
    [InlineData("./sub", "it is not absolute")]
    [InlineData("//", "it has an empty component (double or trailing slash)")]
    [InlineData("/a//b", "it has an empty component (double or trailing slash)")]
    [InlineData("/a/", "it has an empty component (double or trailing slash)")]
    [InlineData("/..", "it has a '..' component")]
    [InlineData("/a/../b", "it has a '..' component")]
    [InlineData("/a/./b", "it has a '.' component")]
    [InlineData("/a\0b", "it contains a NUL character")]
    public void Other_mountpoints_are_rejected(string? mountpoint, string reason)
    {
        var error = Assert.Throws<ConfigException>(() => VirtualMountpoint.Validate(mountpoint));

        Assert.Equal(ConfigErrorKind.InvalidMountpoint, error.Kind);
        Assert.EndsWith(reason, error.Message, StringComparison.Ordinal);
        Assert.False(VirtualMountpoint.IsValid(mountpoint));
    }

    [Fact]
    public void Overlong_component_is_rejected()
    {
        Assert.True(VirtualMountpoint.IsValid("/" + new string('a', 255)));
        Assert.False(VirtualMountpoint.IsValid("/" + new string('a', 256)));
    }

    [Fact]
    public void Api_body_becomes_a_mount_command()
    {
        var cmd = FsBackendMountCmd.FromApiRequest(
            """{"source":"/images/boot","fs_type":"rafs","config":"{\"version\":2}","prefetch_files":["/usr"],"extra":1}""",
            "/snap");

        Assert.Equal(FsBackendType.Rafs, cmd.FsType);
        Assert.Equal("/images/boot", cmd.Source);
        Assert.Equal("""{"version":2}""", cmd.Config);
        Assert.Equal("/snap", cmd.Mountpoint);
        Assert.Equal(["/usr"], cmd.PrefetchFiles!);
    }

    [Fact]
    public void Api_body_without_fs_type_fails_as_empty_fs_type()
    {
        var error = Assert.Throws<ConfigException>(() => FsBackendMountCmd.FromApiRequest("""{"source":"/s","config":"{}"}""", "/"));

        Assert.Equal(ConfigErrorKind.InvalidFsType, error.Kind);
        Assert.Contains("but '' was specified", error.Message);
    }

    [Theory]
    [InlineData("""{"fs_type":"rafs","config":"{}"}""", "source")]
    [InlineData("""{"fs_type":"rafs","source":"/s"}""", "config")]
    [InlineData("""{"fs_type":"rafs","source":"/s","config":"{}","prefetch_files":"/usr"}""", "prefetch_files")]
    [InlineData("not json", "mount request body")]
    public void Malformed_api_body_is_rejected(string body, string mention)
    {
        var error = Assert.Throws<ConfigException>(() => FsBackendMountCmd.FromApiRequest(body, "/"));

        Assert.Equal(ConfigErrorKind.Malformed, error.Kind);
        Assert.Contains(mention, error.Message);
    }

    [Fact]
    public void Api_body_with_relative_prefetch_entry_or_bad_mountpoint_is_rejected()
    {
        const string body = """{"source":"/s","fs_type":"rafs","config":"{}","prefetch_files":["usr"]}""";
        Assert.Equal(ConfigErrorKind.InvalidPrefetchList, Assert.Throws<ConfigException>(() => FsBackendMountCmd.FromApiRequest(body, "/")).Kind);

        const string good = """{"source":"/s","fs_type":"rafs","config":"{}"}""";
        Assert.Equal(ConfigErrorKind.InvalidMountpoint, Assert.Throws<ConfigException>(() => FsBackendMountCmd.FromApiRequest(good, "/a/../b")).Kind);
    }

    [Fact]
    public void Mount_command_json_round_trips_with_display_fs_type()
    {
        var cmd = new FsBackendMountCmd
        {
            FsType = FsBackendType.PassthroughFs,
            Source = "/srv/share",
            Config = "",
            Mountpoint = "/share",
            PrefetchFiles = null,
        };

        var json = JsonSerializer.Serialize(cmd, ConfigJson.Options);
        var back = JsonSerializer.Deserialize<FsBackendMountCmd>(json, ConfigJson.Options)!;

        Assert.Equal("""{"fs_type":"PassthroughFs","source":"/srv/share","config":"","mountpoint":"/share","prefetch_files":null}""", json);
        Assert.Equal(cmd, back);
    }
}
