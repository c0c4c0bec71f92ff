using Nydus.Actors.Tests.Support;
using Xunit;

namespace Nydus.Actors.Tests.Block;

/// <summary>
/// The block device as a real kernel uses it, in the test VM (this host's kernel has no NBD driver and no
/// device-mapper): Debian 6.1's nbd driver attached to our server both ways (our ioctl mode; nbd-client over our
/// Unix socket), its EROFS mounting /dev/nbdX, and dm-verity over our export with our hash tree and root hash. Each
/// mount's manifest (types, modes, owners, mtimes, nlink, sizes, symlink targets, rdev, sha256, xattrs) must equal the
/// source tree's. One VM boot serves the class (<see cref="GuestKernelFixture"/>).
/// </summary>
public sealed class GuestKernelBlockTests : IClassFixture<GuestKernelFixture>
{
    private readonly GuestKernelFixture _fixture;

    public GuestKernelBlockTests(GuestKernelFixture fixture)
    {
        _fixture = fixture;
    }

    [VmFact]
    public void Kernel_mode_attaches_nbd0_through_ioctls_and_its_erofs_mount_equals_the_source_tree()
    {
        GuestRun run = _fixture.Run;
        AssertStep(run, "nydusd-started", "0");
        // /sys/block/nbd0/size is in 512-byte sectors: the size our process set with NBD_SET_SIZE_BLOCKS.
        AssertStep(run, "ioctl-size", (run.ImageBytes / 512).ToString());
        AssertMountEqualsSource(run, "ioctl");
        // SIGTERM detached the device (NBD_DISCONNECT) and the process ended cleanly.
        AssertStep(run, "nydusd-exit", "0");
        AssertStep(run, "ioctl-size-after", "0");
    }

    [VmFact]
    public void Kernel_mode_ends_cleanly_when_nbd_client_detaches_the_device_from_outside()
    {
        GuestRun run = _fixture.Run;
        AssertStep(run, "outside-size", (run.ImageBytes / 512).ToString());
        AssertStep(run, "outside-read", "0");
        AssertStep(run, "outside-detach", "0");
        // The process noticed (NBD_DO_IT returned), said so and exited 0 within the bound, and the device is free.
        AssertStep(run, "outside-ended", "0");
        AssertStep(run, "outside-exit", "0");
        AssertStep(run, "outside-said-detached", "0");
        AssertStep(run, "outside-size-after", "0");
    }

    [VmFact]
    public void Nbd_client_attached_to_our_unix_socket_mounts_equal_to_the_source_tree()
    {
        GuestRun run = _fixture.Run;
        AssertStep(run, "nbd-client", "0");
        AssertMountEqualsSource(run, "nbdclient");
        AssertStep(run, "nbd-client-detach", "0");
    }

    [VmFact]
    public void Dm_verity_over_our_export_with_our_root_hash_mounts_equal_and_a_wrong_hash_fails_reads()
    {
        GuestRun run = _fixture.Run;
        Assert.NotEqual("0", run.Result("verity-wrong-hash-read") ?? "0");
        AssertStep(run, "verity-open", "0");
        AssertStep(run, "verity-status", "0");
        AssertMountEqualsSource(run, "verity");
        AssertStep(run, "verity-close", "0");
    }

    private static void AssertStep(GuestRun run, string step, string expected)
    {
        string? actual = run.Result(step);
        Assert.True(actual == expected, $"guest step {step}: expected {expected}, got {actual ?? "(not run)"} (VM exit {run.ExitCode})\n{run.Diagnostics()}");
    }

    private static void AssertMountEqualsSource(GuestRun run, string name)
    {
        AssertStep(run, name + "-mount", "0");
        AssertStep(run, name + "-manifest", "0");
        string[] expected = Lines(run.SourceManifest);
        string[] served = Lines(run.Manifest(name) ?? "");
        Assert.True(expected.Length > 100, $"the source manifest has only {expected.Length} lines");
        string[] missing = expected.Except(served).Take(10).ToArray();
        string[] extra = served.Except(expected).Take(10).ToArray();
        Assert.True(missing.Length == 0 && extra.Length == 0 && expected.Length == served.Length,
            $"{name}: the guest's mount differs from the source tree\nonly in the source:\n{string.Join("\n", missing)}\nonly in the mount:\n{string.Join("\n", extra)}");
        AssertStep(run, name + "-umount", "0");
    }

    private static string[] Lines(string text) => text.Split('\n', StringSplitOptions.RemoveEmptyEntries);
}
