using System.Text;
using Nydus.Actors.Config;
using Xunit;

namespace Nydus.Actors.Tests.Config;

/// <summary><see cref="NydusConfigLoader.LoadFile"/>: size limit, unreadable files, encoding, IMAGE_PULL_AUTH.</summary>
public sealed class ConfigFileTests : IDisposable
{
    private const string LocalFs = """{"version":2,"backend":{"type":"localfs","localfs":{"dir":"/blobs"}}}""";

    private readonly TempDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    [Fact]
    public void File_of_exactly_one_mebibyte_is_accepted()
    {
        var path = _temp.WriteFile("full.json", Padded(LocalFs, NydusConfigLoader.MaxFileSize));

        Assert.Equal(NydusConfigLoader.MaxFileSize, new FileInfo(path).Length);
        Assert.Equal("/blobs", NydusConfigLoader.LoadFile(path).Backend!.LocalFs!.Dir);
    }

    [Fact]
    public void File_one_byte_over_one_mebibyte_is_rejected_naming_the_path()
    {
        var path = _temp.WriteFile("big.json", Padded(LocalFs, NydusConfigLoader.MaxFileSize + 1));

        var error = Assert.Throws<ConfigException>(() => NydusConfigLoader.LoadFile(path));

        Assert.Equal(ConfigErrorKind.TooLarge, error.Kind);
        Assert.Contains(path, error.Message);
    }

    [Fact]
    public void Missing_file_is_unreadable_naming_the_path()
    {
        var path = Path.Combine(_temp.Path, "absent.json");

        var error = Assert.Throws<ConfigException>(() => NydusConfigLoader.LoadFile(path));

        Assert.Equal(ConfigErrorKind.Unreadable, error.Kind);
        Assert.StartsWith($"cannot read configuration file {path}", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Directory_is_unreadable()
    {
        var error = Assert.Throws<ConfigException>(() => NydusConfigLoader.LoadFile(_temp.Path));

        Assert.Equal(ConfigErrorKind.Unreadable, error.Kind);
    }

    [Fact]
    public void Invalid_utf8_is_malformed()
    {
        var bytes = Encoding.UTF8.GetBytes("""{"version":2,"id":"X"}""");
        bytes[^3] = 0xff;
        var path = _temp.WriteBytes("bad.json", bytes);

        var error = Assert.Throws<ConfigException>(() => NydusConfigLoader.LoadFile(path));

        Assert.Equal(ConfigErrorKind.Malformed, error.Kind);
        Assert.Contains("UTF-8", error.Message);
    }

    [Fact]
    public void Validation_errors_name_the_file()
    {
        var path = _temp.WriteFile("bad-mode.json", """{"version":2,"rafs":{"mode":"x"}}""");

        var error = Assert.Throws<ConfigException>(() => NydusConfigLoader.LoadFile(path));

        Assert.EndsWith($"(in {path})", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Toml_file_loads()
    {
        var path = _temp.WriteFile("c.toml", "version = 2\n[backend]\ntype = \"localfs\"\n[backend.localfs]\ndir = \"/t\"\n");

        Assert.Equal("/t", NydusConfigLoader.LoadFile(path).Backend!.LocalFs!.Dir);
    }

    [Fact]
    public void Image_pull_auth_replaces_registry_auth_only_when_a_registry_section_exists()
    {
        var registry = _temp.WriteFile("r.json", """{"version":2,"backend":{"type":"registry","registry":{"host":"h","repo":"r","auth":"old"}}}""");
        var localfs = _temp.WriteFile("l.json", LocalFs);

        Assert.Equal("new", NydusConfigLoader.LoadFile(registry, imagePullAuth: "new").Backend!.Registry!.Auth);
        Assert.Equal("old", NydusConfigLoader.LoadFile(registry).Backend!.Registry!.Auth);
        Assert.Null(NydusConfigLoader.LoadFile(localfs, imagePullAuth: "new").Backend!.Registry);
    }

    private static string Padded(string json, long totalBytes) =>
        json + new string(' ', (int)(totalBytes - Encoding.UTF8.GetByteCount(json)));
}
