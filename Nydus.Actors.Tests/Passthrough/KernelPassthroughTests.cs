using Nydus.Actors.Fuse.Abi;
using Nydus.Actors.Fuse.Ops;
using Nydus.Actors.Fuse.Session;
using Nydus.Actors.Passthrough;
using Nydus.Actors.Tests.Support;
using Xunit;

namespace Nydus.Actors.Tests.Passthrough;

/// <summary>
/// FUSE passthrough (Linux 6.9+): files opened through a passthrough mount are backed by their host files in the
/// kernel, so reads and writes by ordinary tools (cat, dd, cmp) never reach the daemon, and the bytes are right both
/// ways. Proved by the file system's own READ/WRITE counters staying at zero; with passthrough off they count.
/// </summary>
public sealed class KernelPassthroughTests
{
    private const int FileSize = 3 * 1024 * 1024 + 123;

    private static byte[] Random(int size, int seed)
    {
        var bytes = new byte[size];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    private static FuseTestMount Start(bool kernelPassthrough) =>
        FuseTestMount.StartPassthrough(writable: true,
            prepare: backing => File.WriteAllBytes(Path.Combine(backing, "data.bin"), Random(FileSize, 1)),
            initOptions: FuseInitOptions.WritablePassthrough(kernelPassthrough: kernelPassthrough));

    /// <summary>Reads, overwrites in place, appends and creates through the mount with ordinary tools; checks both sides.</summary>
    private static void ReadAndWriteWithTools(FuseTestMount mount)
    {
        TreeBuilder.Run("cmp", mount.Mounted("data.bin"), mount.Backed("data.bin"));
        Assert.Equal(FileSize.ToString(), TreeBuilder.Run("stat", "-c", "%s", mount.Mounted("data.bin")).Trim());

        // In place, in the middle, without truncating; then through the host: each side sees the other's bytes.
        File.WriteAllBytes(Path.Combine(mount.Root, "patch.bin"), Random(200_000, 2));
        TreeBuilder.Run("dd", "if=" + Path.Combine(mount.Root, "patch.bin"), "of=" + mount.Mounted("data.bin"),
            "bs=100000", "seek=7", "conv=notrunc", "status=none");
        TreeBuilder.Run("cmp", mount.Mounted("data.bin"), mount.Backed("data.bin"));
        var expected = Random(FileSize, 1);
        Random(200_000, 2).CopyTo(expected, 700_000);
        Assert.True(expected.AsSpan().SequenceEqual(File.ReadAllBytes(mount.Backed("data.bin"))), "the host file lacks the write");

        // A new file (CREATE) written by dd, and an append by the shell.
        TreeBuilder.Run("dd", "if=" + Path.Combine(mount.Root, "patch.bin"), "of=" + mount.Mounted("new.bin"), "bs=64k", "status=none");
        TreeBuilder.Run("sh", "-c", "printf tail >> \"$0\"", mount.Mounted("new.bin"));
        byte[] created = [.. Random(200_000, 2), .. "tail"u8.ToArray()];
        Assert.True(created.AsSpan().SequenceEqual(File.ReadAllBytes(mount.Backed("new.bin"))), "the created file differs on the host");
        TreeBuilder.Run("cmp", mount.Mounted("new.bin"), mount.Backed("new.bin"));
        Assert.Equal("tail", TreeBuilder.Run("tail", "-c", "4", mount.Mounted("new.bin")));

        // Two opens of one file at once share its backing file (the kernel refuses a second one for a node in use).
        using (var first = new FileStream(mount.Mounted("data.bin"), FileMode.Open, FileAccess.Read, FileShare.ReadWrite, 1))
        using (var second = new FileStream(mount.Mounted("data.bin"), FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite, 1))
        {
            second.Position = 10;
            second.Write("both"u8);
            second.Flush();
            first.Position = 10;
            var read = new byte[4];
            first.ReadExactly(read);
            Assert.Equal("both"u8.ToArray(), read);
        }
    }

    /// <summary>
    /// A write or truncation by a user without CAP_FSETID clears suid, and sgid where the group may execute; root's
    /// write does not; any write drops security.capability. The same steps on a plain host directory and through the
    /// mount (kernel passthrough on, so the writes never reach the daemon) leave the same modes, sizes and xattrs.
    /// The O_TRUNC open is the case ATOMIC_O_TRUNC used to get wrong (it kept 6777). Not compared: sgid without group
    /// exec, which the host (Linux 6.2+) clears for a writer outside the file's group and the kernel's FUSE client keeps
    /// (its setattr recomputes the mode with the older rule), whatever the daemon does.
    /// </summary>
    [FuseFact]
    public void Writes_and_truncations_clear_suid_sgid_and_capabilities_as_on_the_host()
    {
        using var mount = FuseTestMount.StartPassthrough(writable: true,
            mountOptions: new FuseMountOptions { ReadOnly = false, AllowOther = true, Source = "passthrough" });
        string host = Path.Combine(mount.Root, "host");
        Directory.CreateDirectory(host);

        string ResultAfterSteps(string files, string view)
        {
            // Made by root on the host side: modes as given, then the steps through `view`.
            TreeBuilder.Run("sh", "-c",
                "cd \"$0\" && for f in su sg trunc truncate root cap; do printf x > $f; done && " +
                "chmod 4777 su root && chmod 2777 sg && chmod 6777 trunc truncate && chmod 644 cap && " +
                "setfattr -n security.capability -v 0x0100000200200000000000000000000000000000 cap", files);
            TreeBuilder.Run("setpriv", "--reuid=4321", "--regid=4321", "--clear-groups", "sh", "-c",
                "printf y >> \"$0/su\" && printf y >> \"$0/sg\" && : > \"$0/trunc\" && truncate -s 0 \"$0/truncate\"",
                view);
            TreeBuilder.Run("sh", "-c", "printf y >> \"$0/root\" && printf y >> \"$0/cap\"", view);
            string modes = TreeBuilder.Run("sh", "-c", "cd \"$0\" && stat -c '%n %a %s' su sg trunc truncate root cap", files);
            string capability = TreeBuilder.Run("sh", "-c", "getfattr -n security.capability \"$0/cap\" >/dev/null 2>&1 && echo kept || echo dropped", files);
            return modes.Trim() + "\n" + capability.Trim();
        }

        string onHost = ResultAfterSteps(host, host);
        string throughMount = ResultAfterSteps(mount.Backing, mount.MountPoint);

        // The host's own answer, spelled out, so that a change of the host's rules shows here and not as a pass.
        Assert.Equal("su 777 2\nsg 777 2\ntrunc 777 0\ntruncate 777 0\nroot 4777 2\ncap 644 2\ndropped", onHost.Trim());
        Assert.Equal(onHost, throughMount);
        var fs = Assert.IsType<PassthroughFileSystem>(mount.FileSystem);
        Assert.True(fs.KernelPassthroughActive);
        Assert.Equal(0, fs.WriteRequests);
    }

    [FuseFact]
    public void Opened_files_are_read_and_written_by_the_kernel_without_the_daemon()
    {
        using var mount = Start(kernelPassthrough: true);
        var fs = Assert.IsType<PassthroughFileSystem>(mount.FileSystem);
        // Wait for INIT: the first request through the mount.
        Assert.True(File.Exists(mount.Mounted("data.bin")));
        Assert.True((mount.Session.Dispatcher.Connection!.Flags & FuseInitFlags.Passthrough) != 0,
            "this kernel did not grant FUSE_PASSTHROUGH (Linux 6.9+ with CONFIG_FUSE_PASSTHROUGH)");
        Assert.True(fs.KernelPassthroughActive);

        ReadAndWriteWithTools(mount);

        Assert.Equal(0, fs.ReadRequests);
        Assert.Equal(0, fs.WriteRequests);
        Assert.True(fs.BackedOpens >= 8, $"only {fs.BackedOpens} opens were backed");
        // Every open was released, and with it the node's backing id. RELEASE is asynchronous to close(2): bounded wait.
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (fs.BackingIds != 0 && DateTime.UtcNow < deadline) Thread.Sleep(20);
        Assert.Equal(0, fs.BackingIds);
    }

    [FuseFact]
    public void Without_kernel_passthrough_the_same_work_goes_through_the_daemon()
    {
        using var mount = Start(kernelPassthrough: false);
        var fs = Assert.IsType<PassthroughFileSystem>(mount.FileSystem);
        Assert.True(File.Exists(mount.Mounted("data.bin")));
        Assert.True((mount.Session.Dispatcher.Connection!.Flags & FuseInitFlags.Passthrough) == 0);

        ReadAndWriteWithTools(mount);

        Assert.True(fs.ReadRequests > 0);
        Assert.True(fs.WriteRequests > 0);
        Assert.Equal(0, fs.BackedOpens);
    }
}
