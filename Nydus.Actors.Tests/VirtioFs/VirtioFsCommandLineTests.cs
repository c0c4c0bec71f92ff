using Nydus.Actors.Tests.Support;
using Xunit;

namespace Nydus.Actors.Tests.VirtioFs;

/// <summary><c>nydusd virtiofs</c>'s bad command lines: one clear line, nothing started, nobody's file touched (the daemon's
/// start refuses a missing image or a file at the socket path before the socket exists).</summary>
public sealed class VirtioFsCommandLineTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task Missing_or_conflicting_sources_are_refused_before_anything_starts()
    {
        using var dir = new TempDir("virtiofs-cli");
        string sock = dir.Combine("vfs.sock");
        (int code, string output) = await NydusdProcess.RunAsync(Timeout, "virtiofs", "--sock", sock);
        Assert.Equal(2, code);
        Assert.Contains("give --bootstrap or --shared-dir, or --apisock to mount images through the API", output);
        (code, output) = await NydusdProcess.RunAsync(Timeout, "virtiofs", "--sock", sock, "--shared-dir", dir.Path, "--bootstrap", "/nonexistent.boot", "--localfs-dir", dir.Path);
        Assert.Equal(2, code);
        Assert.Contains("give at most one of --bootstrap and --shared-dir", output);
        (code, output) = await NydusdProcess.RunAsync(Timeout, "virtiofs", "--sock", sock, "--bootstrap", "/nonexistent.boot");
        Assert.Equal(2, code);
        Assert.Contains("--bootstrap needs exactly one of --config and --localfs-dir", output);
        (code, output) = await NydusdProcess.RunAsync(Timeout, "virtiofs", "--sock", sock, "--shared-dir", dir.Path, "--thread-num", "0");
        Assert.Equal(2, code);
        Assert.Contains("invalid --thread-num 0", output);
        (code, output) = await NydusdProcess.RunAsync(Timeout, "virtiofs", "--sock", sock, "--shared-dir", dir.Path, "--blobfs");
        Assert.Equal(2, code);
        Assert.Contains("--blobfs serves an image: give --bootstrap", output);
        // blobfs runs without the daemon: its flags are refused, not ignored.
        (code, output) = await NydusdProcess.RunAsync(Timeout, "virtiofs", "--sock", sock, "--blobfs", "--bootstrap", "/nonexistent.boot",
            "--localfs-dir", dir.Path, "--apisock", dir.Combine("api.sock"));
        Assert.Equal(2, code);
        Assert.Contains("--apisock is not supported with --blobfs yet", output);
        // A vhost-user connection cannot be taken over.
        (code, output) = await NydusdProcess.RunAsync(Timeout, "virtiofs", "--sock", sock, "--shared-dir", dir.Path, "--upgrade");
        Assert.Equal(2, code);
        Assert.Contains("--upgrade is not supported by nydusd virtiofs", output);
        (code, output) = await NydusdProcess.RunAsync(Timeout, "virtiofs", "--sock", sock, "--writable",
            "--bootstrap", ImageFixtures.UpstreamFile("bootstrap", "rafs-v6-2.2.boot"), "--localfs-dir", dir.Path);
        Assert.Equal(2, code);
        Assert.Contains("--writable applies to --shared-dir only", output);
        Assert.False(File.Exists(sock));
        Assert.False(File.Exists(dir.Combine("api.sock")));
    }

    [Fact]
    public async Task Blobfs_over_a_blob_the_backend_does_not_have_is_one_clear_error_before_the_socket_exists()
    {
        using var dir = new TempDir("virtiofs-cli");
        string sock = dir.Combine("vfs.sock");
        string empty = Directory.CreateDirectory(dir.Combine("blobs")).FullName;
        (int code, string output) = await NydusdProcess.RunAsync(Timeout, "virtiofs", "--blobfs", "--sock", sock,
            "--bootstrap", ImageFixtures.UpstreamFile("bootstrap", "rafs-v6-2.2.boot"), "--localfs-dir", empty);
        Assert.Equal(1, code);
        Assert.Contains("blob be7d77eeb719f70884758d1aa800ed0fb09d701aaec469964e9d54325f0d5fef not found", output);
        Assert.False(File.Exists(sock));
    }

    [Fact]
    public async Task A_missing_image_or_a_regular_file_at_the_socket_path_is_one_clear_error()
    {
        using var dir = new TempDir("virtiofs-cli");
        (int code, string output) = await NydusdProcess.RunAsync(Timeout, "virtiofs", "--sock", dir.Combine("vfs.sock"),
            "--bootstrap", dir.Combine("missing.boot"), "--localfs-dir", dir.Path);
        Assert.Equal(1, code);
        Assert.Contains("missing.boot does not exist", output);

        string someonesFile = dir.Combine("notes.txt");
        File.WriteAllText(someonesFile, "keep me");
        (code, output) = await NydusdProcess.RunAsync(Timeout, "virtiofs", "--sock", someonesFile, "--shared-dir", dir.Path);
        Assert.Equal(1, code);
        Assert.Contains("exists and is not a socket", output);
        Assert.Equal("keep me", File.ReadAllText(someonesFile));
    }
}
