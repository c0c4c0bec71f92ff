using Nydus.Actors.Config;
using Xunit;

namespace Nydus.Actors.Tests.Config;

/// <summary><c>--prefetch-files</c> files and API <c>prefetch_files</c> arrays.</summary>
public sealed class PrefetchListTests : IDisposable
{
    private readonly TempDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    [Fact]
    public void File_entries_are_trimmed_and_blank_lines_skipped()
    {
        var path = _temp.WriteFile("list", "/usr/bin\n\n   \n\t/etc/passwd  \r\n/lib with space/x\n/\n");

        var entries = PrefetchList.ParseFile(path);

        Assert.Equal(["/usr/bin", "/etc/passwd", "/lib with space/x", "/"], entries);
    }

    [Fact]
    public void Empty_file_gives_an_empty_list()
    {
        Assert.Empty(PrefetchList.ParseFile(_temp.WriteFile("empty", "")));
    }

    [Fact]
    public void Relative_entry_fails_with_line_number_and_file()
    {
        var path = _temp.WriteFile("list", "/ok\n\nusr/bin\n");

        var error = Assert.Throws<ConfigException>(() => PrefetchList.ParseFile(path));

        Assert.Equal(ConfigErrorKind.InvalidPrefetchList, error.Kind);
        Assert.Equal($"prefetch list {path}, line 3: 'usr/bin' is not an absolute path", error.Message);
    }

    [Fact]
    public void Missing_file_is_unreadable()
    {
        var path = Path.Combine(_temp.Path, "absent");

        var error = Assert.Throws<ConfigException>(() => PrefetchList.ParseFile(path));

        Assert.Equal(ConfigErrorKind.Unreadable, error.Kind);
        Assert.Contains(path, error.Message);
    }

    [Fact]
    public void Api_list_null_means_no_list()
    {
        Assert.Null(PrefetchList.Validate(null));
    }

    [Fact]
    public void Api_list_of_absolute_paths_is_returned_unchanged()
    {
        string[] list = ["/etc/passwd", "/"];

        Assert.Same(list, PrefetchList.Validate(list));
    }

    [Theory]
    [InlineData("etc/passwd")]
    [InlineData("")]
    [InlineData("./x")]
    public void Api_list_with_relative_entry_is_rejected(string entry)
    {
        var error = Assert.Throws<ConfigException>(() => PrefetchList.Validate(["/ok", entry]));

        Assert.Equal(ConfigErrorKind.InvalidPrefetchList, error.Kind);
        Assert.StartsWith("prefetch_files[1]:", error.Message, StringComparison.Ordinal);
    }
}
