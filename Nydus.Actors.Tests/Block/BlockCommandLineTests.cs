using System.Diagnostics;
using System.Text.RegularExpressions;
using Nydus.Actors.Tests.Support;
using Xunit;

namespace Nydus.Actors.Tests.Block;

/// <summary>The built nydusd's <c>export --block</c> and <c>nbd</c> verbs, run as real processes.</summary>
public sealed partial class BlockCommandLineTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task Export_with_verity_writes_the_device_and_a_tree_veritysetup_verifies()
    {
        using var dir = new TempDir("cli-export");
        string output = dir.Combine("disk.img");
        (int code, string text) = await NydusdProcess.RunAsync(Timeout, "export", "--block", "--bootstrap", UpstreamBlockImage.Bootstrap,
            "--localfs-dir", UpstreamBlockImage.BlobDir, "--output", output, "--verity");
        Assert.True(code == 0, text);
        byte[] written = File.ReadAllBytes(output);
        byte[] expected = UpstreamBlockImage.ExpectedDevice;
        Assert.True(expected.AsSpan().SequenceEqual(written.AsSpan(0, expected.Length)), "the data part differs from the device");

        string root = RootHash().Match(text).Groups[1].Value;
        Assert.Equal(64, root.Length);
        TreeBuilder.Run("veritysetup", "verify", output, output, root, $"--hash-offset={expected.Length}");
    }

    [Fact]
    public async Task Export_of_bad_input_fails_clearly_and_writes_nothing()
    {
        using var dir = new TempDir("cli-export-bad");
        using var emptyBlobs = new TempDir("cli-noblobs");
        string output = dir.Combine("disk.img");
        (int code, string text) = await NydusdProcess.RunAsync(Timeout, "export", "--block", "--bootstrap", UpstreamBlockImage.Bootstrap,
            "--localfs-dir", emptyBlobs.Path, "--output", output);
        Assert.Equal(1, code);
        Assert.Contains(UpstreamBlockImage.BlobId, text);
        Assert.Empty(Directory.GetFileSystemEntries(dir.Path));

        (code, text) = await NydusdProcess.RunAsync(Timeout, "export", "--block", "--bootstrap", UpstreamBlockImage.Bootstrap, "--output", output);
        Assert.Equal(2, code);
        Assert.Contains("--config", text);
    }

    [Fact]
    public async Task Nbd_verb_serves_unix_and_tcp_until_sigterm()
    {
        using var dir = new TempDir("cli-nbd");
        string socket = dir.Combine("nbd.sock");
        await using var nydusd = NydusdProcess.Start("nbd", "--bootstrap", UpstreamBlockImage.Bootstrap, "--localfs-dir",
            UpstreamBlockImage.BlobDir, "--nbd-socket", socket, "--nbd-tcp", "127.0.0.1:0", "--export-name", "img");
        var watch = Stopwatch.StartNew();
        Match served;
        while (!(served = ServedOn().Match(nydusd.Output)).Success)
        {
            Assert.False(nydusd.HasExited, nydusd.Output);
            Assert.True(watch.Elapsed < Timeout, "nydusd nbd did not report its addresses: " + nydusd.Output);
            await Task.Delay(50);
        }

        string port = served.Groups[1].Value;
        TreeBuilder.Run("nbdcopy", $"nbd+unix:///img?socket={socket}", dir.Combine("unix.img"));
        TreeBuilder.Run("nbdcopy", $"nbd://127.0.0.1:{port}/", dir.Combine("tcp.img"));
        Assert.True(UpstreamBlockImage.ExpectedDevice.AsSpan().SequenceEqual(File.ReadAllBytes(dir.Combine("unix.img"))));
        Assert.True(UpstreamBlockImage.ExpectedDevice.AsSpan().SequenceEqual(File.ReadAllBytes(dir.Combine("tcp.img"))));

        nydusd.Signal(NydusdProcess.SIGTERM);
        Assert.Equal(0, await nydusd.WaitForExitAsync(Timeout));
        Assert.False(File.Exists(socket), "the NBD socket was left behind");
    }

    [Fact]
    public async Task Nbd_kernel_mode_refuses_a_missing_driver_and_a_device_that_is_not_nbd_clearly()
    {
        using var dir = new TempDir("cli-nbd-dev");
        string[] image = ["--bootstrap", UpstreamBlockImage.Bootstrap, "--localfs-dir", UpstreamBlockImage.BlobDir];
        if (!Directory.Exists("/sys/module/nbd"))
        {
            // This host: no NBD driver at all (the kernel mode itself is tested in the VM, GuestKernelBlockTests).
            (int code, string text) = await NydusdProcess.RunAsync(Timeout, ["nbd", dir.Combine("nbd0"), .. image]);
            Assert.True(code == 1, text);
            Assert.Contains("no NBD driver", text);
        }

        // An ordinary file is no NBD device: the first ioctl says so (ENOTTY), and nothing is left behind.
        string notADevice = dir.Combine("file");
        File.WriteAllText(notADevice, "");
        (int fileCode, string fileText) = await NydusdProcess.RunAsync(Timeout, ["nbd", notADevice, .. image, "--nbd-socket", dir.Combine("s")]);
        Assert.True(fileCode == 1, fileText);
        Assert.Contains("is not an NBD device", fileText);
        Assert.False(File.Exists(dir.Combine("s")), "the NBD socket was left behind");

        // --threads out of range is refused before anything is opened.
        (int threadsCode, string threadsText) = await NydusdProcess.RunAsync(Timeout, ["nbd", .. image, "--nbd-socket", dir.Combine("t"), "--threads", "0"]);
        Assert.True(threadsCode != 0, threadsText);
        Assert.Contains("invalid --threads 0", threadsText);
        Assert.False(File.Exists(dir.Combine("t")), "a socket was bound for a refused command line");
    }

    [GeneratedRegex("dm-verity root hash: ([0-9a-f]{64})")]
    private static partial Regex RootHash();

    [GeneratedRegex(@"served on .*127\.0\.0\.1:(\d+)")]
    private static partial Regex ServedOn();
}
