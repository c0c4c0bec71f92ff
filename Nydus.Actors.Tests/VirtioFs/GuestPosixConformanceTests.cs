using Nydus.Actors.Tests.Block;
using Nydus.Actors.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace Nydus.Actors.Tests.VirtioFs;

/// <summary>
/// passthroughfs over virtio-fs against POSIX semantics, in the test VM: a writable <c>nydusd virtiofs --shared-dir</c>
/// on a host temp dir, mounted with the guest kernel's virtiofs, runs scripts/vm/posix-conformance.py (our own subset
/// modelled on pjdfstest's areas: open/creat flags, chmod, chown, link, mkdir, mkfifo/mknod, rename, rmdir, symlink,
/// truncate, unlink, utimensat and their errno cases, some as uid 65534). The same script on a guest tmpfs is the
/// oracle: any line that differs fails the test. pjdfstest itself is packaged neither in Debian nor on npm.
/// </summary>
public sealed class GuestPosixConformanceTests(ITestOutputHelper output)
{
    private static readonly TimeSpan VmTimeout = TimeSpan.FromMinutes(8);

    [VmFact]
    public async Task Writable_passthrough_over_virtiofs_behaves_as_the_guests_tmpfs()
    {
        using var dir = new TempDir("vfposix");
        string shared = Directory.CreateDirectory(dir.Combine("shared")).FullName;
        // The guest sees the share's root with the host directory's mode; the checks' as-user steps need to enter it.
        File.SetUnixFileMode(shared, (UnixFileMode)0b111_101_101);
        string exchange = Directory.CreateDirectory(dir.Combine("out")).FullName;
        string socket = dir.Combine("vfs.sock");
        await using NydusdProcess daemon = NydusdProcess.Start("virtiofs", "--sock", socket, "--shared-dir", shared, "--writable");
        await daemon.WaitForOutputAsync("virtio-fs served on", TimeSpan.FromSeconds(60));

        string guestScript = dir.Combine("guest.sh");
        File.WriteAllText(guestScript,
            $"""
            export TAG=nydus0 OUT='{exchange}'
            exec bash '{Path.Combine(TestVm.ScriptsDirectory, "guest-posix.sh")}'

            """);
        (int exit, string console) = TestVm.Run(guestScript, exchange, VmTimeout,
            new Dictionary<string, string> { ["NYDUS_VM_VHOST_USER_FS"] = socket });
        var run = new GuestRun(exit, console, exchange, "", 0);
        string diagnostics = run.Diagnostics() + "\n--- nydusd\n" + daemon.Output;

        foreach (string step in new[] { "tmpfs-mount", "virtiofs-mount", "tmpfs-run", "virtiofs-run", "virtiofs-umount" })
        {
            Assert.True(run.Result(step) == "0", $"guest step {step}: {run.Result(step) ?? "(not run)"} (VM exit {exit})\n{diagnostics}");
        }

        string[] oracle = File.ReadAllLines(Path.Combine(exchange, "tmpfs.results"));
        string[] served = File.ReadAllLines(Path.Combine(exchange, "virtiofs.results"));
        output.WriteLine($"--- virtiofs.results ({served.Length} lines; the tmpfs oracle's has {oracle.Length})\n{string.Join("\n", served)}");
        // The oracle ran every check (the last line counts them) and none of them broke on tmpfs itself.
        Assert.True(oracle.Length > 40 && oracle[^1] == $"checks\t{oracle.Length - 1}", $"the oracle's run is incomplete:\n{string.Join("\n", oracle)}");
        Assert.DoesNotContain(oracle, l => l.Contains("\tEXC:", StringComparison.Ordinal));
        string[] differences = oracle.Zip(served, (o, s) => o == s ? null : $"tmpfs:    {o}\nvirtiofs: {s}").OfType<string>()
            .Concat(served.Length == oracle.Length ? [] : [$"{oracle.Length} lines on tmpfs, {served.Length} on virtiofs"]).ToArray();
        Assert.True(differences.Length == 0, $"{differences.Length} checks differ from the tmpfs oracle:\n{string.Join("\n", differences)}\n{diagnostics}");

        // The guest's changes are in the host directory: the first check's files, with the modes the guest gave them.
        string first = Directory.GetDirectories(shared).Order(StringComparer.Ordinal).First();
        Assert.Equal((UnixFileMode)0b110_100_000, File.GetUnixFileMode(Path.Combine(first, "f640")));
        Assert.Equal((UnixFileMode)0b100_111_101_101, File.GetUnixFileMode(Path.Combine(first, "f4755")));
    }
}
