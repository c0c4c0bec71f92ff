using Nydus.Actors.Tests.Block;
using Nydus.Actors.Tests.Support;
using Xunit;

namespace Nydus.Actors.Tests.VirtioFs;

/// <summary>
/// The VM killed mid-request: qemu 7.2 (TCG) with a vhost-user-fs device on a real <c>nydusd virtiofs</c>, the guest
/// reading the mounted RAFS v6 fixture in a loop (page cache dropped every round, so reads keep reaching the daemon),
/// and qemu SIGKILLed from the host while it does. The daemon must survive, drop everything of that VM (the guest-RAM
/// mapping, the eventfds and the socket qemu sent, the queue threads) and serve the next front-end.
/// </summary>
public sealed class GuestVirtioFsKillTests
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(30);

    [VmFact]
    public async Task Qemu_killed_while_the_guest_reads_leaves_the_daemon_serving_with_nothing_of_that_vm_left()
    {
        await using var daemon = await VirtioFsDaemon.StartWithV6FixtureAsync();
        var before = Snapshot(daemon);
        string exchange = Directory.CreateDirectory(Path.Combine(daemon.Dir, "out")).FullName;
        string guestScript = Path.Combine(daemon.Dir, "guest.sh");
        // The marker goes to the console (the host watches it) once reads are flowing; the loop then runs until qemu dies.
        File.WriteAllText(guestScript, """
            set -u
            mkdir -p /run/mnt
            mount -t virtiofs nydus0 /run/mnt || { echo "mount failed"; exit 1; }
            for i in $(seq 1 100000); do
              cat /run/mnt/lib.rs /run/mnt/sync_io.rs > /dev/null
              echo 3 > /proc/sys/vm/drop_caches
              [ "$i" = 20 ] && echo "NYDUS-GUEST-READING"
            done
            echo "the read loop ended before qemu was killed"
            exit 3

            """);
        var during = before;
        (int exit, string console) = TestVm.Run(guestScript, exchange, TimeSpan.FromMinutes(5),
            new Dictionary<string, string> { ["NYDUS_VM_VHOST_USER_FS"] = daemon.Socket },
            killQemuAt: line => line.Contains("NYDUS-GUEST-READING", StringComparison.Ordinal),
            onConsoleLine: line =>
            {
                // Just before the kill (this runs first): what the daemon holds of the running VM.
                if (line.Contains("NYDUS-GUEST-READING", StringComparison.Ordinal)) during = Snapshot(daemon);
            });
        Assert.True(console.Contains("NYDUS-GUEST-READING") && exit == 125,
            $"the guest did not get to read, or qemu was not killed (exit {exit}):\n{Tail(console)}\n{daemon.Process.Output}");

        // The daemon notices the closed socket, stops the queues and unmaps; bounded wait.
        DateTime deadline = DateTime.UtcNow + Wait;
        while (!daemon.Process.Output.Contains("front-end disconnected") && DateTime.UtcNow < deadline) await Task.Delay(100);
        Assert.Contains("front-end disconnected", daemon.Process.Output);
        Assert.Matches(@"[1-9][0-9]* FUSE requests served", daemon.Process.Output);
        var after = Snapshot(daemon);
        Assert.False(daemon.Process.HasExited, daemon.Process.Output);
        Assert.True(during.MemfdMappings > 0 && during.QueueThreads > 0,
            $"while the VM ran the daemon had {during.MemfdMappings} mappings of its RAM and {during.QueueThreads} queue threads");
        Assert.True(after.MemfdMappings == 0, $"{after.MemfdMappings} mappings of the guest's memfd left");
        Assert.True(after.QueueThreads == 0, $"{after.QueueThreads} virtio-fs queue threads left");
        Assert.True(after.EventFds <= before.EventFds, $"{after.EventFds} eventfds open, {before.EventFds} before the VM");
        Assert.True(after.Sockets <= before.Sockets, $"{after.Sockets} sockets open, {before.Sockets} before the VM");

        // And the next front-end is served.
        using var next = new VhostUserTestFrontend(daemon.Socket, VirtioFsDaemon.NewMemoryPath());
        next.Start(queues: 2);
        ulong request = next.Put(FuseWire.Request(FuseWire.Init, 2, 0, FuseWire.InitBody()));
        ulong reply = next.Put([], 256);
        next.WriteDescriptor(1, 0, request, 104, Nydus.Actors.VirtioFs.SplitVirtqueue.DescFlagNext, 1);
        next.WriteDescriptor(1, 1, reply, 256, Nydus.Actors.VirtioFs.SplitVirtqueue.DescFlagWrite, 0);
        next.Publish(1, 0);
        next.WaitUsed(1, 1, Wait);
        Assert.Equal(0, FuseWire.OutHeader(next.Guest(reply, 16)).Error);
    }

    [VmFact]
    public async Task Daemon_killed_while_the_guest_reads_leaves_the_guests_reads_blocked_with_no_abort_the_guest_can_use()
    {
        // What a daemon restart does to a running VM (issue 21 item 3), as it is with qemu 7.2 and Linux 6.1: qemu's
        // vhost-user-fs neither reconnects nor completes the requests in its rings, and the guest's virtiofs has no
        // way out: it registers no fusectl connection (no abort file) and ignores umount -f. A reader of the mount then
        // sleeps uninterruptibly (state D) for the rest of the VM's life; umount -l only detaches the path. This test
        // pins that down (README: virtio-fs, "a daemon restart"), and that the guest itself keeps running.
        await using var daemon = await VirtioFsDaemon.StartWithV6FixtureAsync();
        string exchange = Directory.CreateDirectory(Path.Combine(daemon.Dir, "out")).FullName;
        string killed = Path.Combine(exchange, "daemon-killed");
        string guestScript = Path.Combine(daemon.Dir, "guest.sh");
        // Nothing in the foreground touches the mount after the kill (it would block the script); the reader is
        // looked at through /proc only.
        File.WriteAllText(guestScript, $$"""
            set -u
            OUT='{{exchange}}'
            result() { echo "$1 $2" >> "$OUT/results"; echo "guest: $1 -> $2"; }
            : > "$OUT/results"
            mkdir -p /run/mnt
            mount -t virtiofs nydus0 /run/mnt; result mount $?
            mountpoint -q /sys/fs/fuse/connections || mount -t fusectl none /sys/fs/fuse/connections; result fusectl $?
            ( for i in $(seq 1 100000); do
                cat /run/mnt/lib.rs /run/mnt/sync_io.rs > /dev/null || exit 0
                echo 3 > /proc/sys/vm/drop_caches
                [ "$i" = 20 ] && echo "NYDUS-GUEST-READING"
              done; exit 1 ) &
            reader=$!
            for _ in $(seq 1 1200); do [ -e "$OUT/daemon-killed" ] && break; sleep 0.25; done
            [ -e "$OUT/daemon-killed" ]; result host-killed-daemon $?
            sleep 5
            kill -0 "$reader" 2>/dev/null; result reader-alive $?
            # The reader's cat, waiting on the dead device: its scheduler state (D: uninterruptible, S: sleeping).
            result cat-state "$(for p in $(pgrep -P "$reader"); do awk '{print $3}' /proc/$p/stat; done | head -1)"
            result fusectl-connections "$(ls /sys/fs/fuse/connections | wc -l)"
            umount -l /run/mnt; result lazy-umount $?
            sleep 2
            kill -0 "$reader" 2>/dev/null; result reader-alive-after-umount $?
            exit 0

            """);
        (int exit, string console) = TestVm.Run(guestScript, exchange, TimeSpan.FromMinutes(5),
            new Dictionary<string, string> { ["NYDUS_VM_VHOST_USER_FS"] = daemon.Socket },
            // The guest's final sync would wait on the dead device too: once the script's exit code is out, qemu goes.
            killQemuAt: line => line.StartsWith("NYDUS-VM-EXIT=", StringComparison.Ordinal),
            onConsoleLine: line =>
            {
                if (!line.Contains("NYDUS-GUEST-READING", StringComparison.Ordinal) || File.Exists(killed)) return;
                daemon.Process.Signal(NydusdProcess.SIGKILL);
                File.WriteAllText(killed, "");
            });
        string results = File.Exists(Path.Combine(exchange, "results")) ? File.ReadAllText(Path.Combine(exchange, "results")) : "";
        string diagnostics = $"VM exit {exit}\n{results}\n{Tail(console)}";
        Assert.True(exit == 0, $"the guest script did not finish\n{diagnostics}");
        Assert.Contains("mount 0\n", results);
        Assert.Contains("host-killed-daemon 0\n", results);
        Assert.Contains("reader-alive 0\n", results);
        Assert.Matches(@"cat-state [DS]\n", results);
        Console.WriteLine(results);
        Assert.Contains("fusectl 0\n", results);
        Assert.Contains("fusectl-connections 0\n", results);
        Assert.Contains("lazy-umount 0\n", results);
        Assert.Contains("reader-alive-after-umount 0\n", results);
    }

    private static (int MemfdMappings, int QueueThreads, int EventFds, int Sockets) Snapshot(VirtioFsDaemon daemon)
    {
        int pid = daemon.Process.Pid;
        // qemu names the guest RAM's memfd after the backend type (memory-backend-memfd, run.sh); .NET's own
        // "doublemapper" memfd (its W^X code heap) is not ours to count.
        int memfd = File.ReadLines($"/proc/{pid}/maps").Count(l => l.Contains("/memfd:memory-backend-memfd", StringComparison.Ordinal));
        int threads = Directory.EnumerateDirectories($"/proc/{pid}/task")
            .Count(t => { try { return File.ReadAllText(Path.Combine(t, "comm")).StartsWith("virtiofs-q", StringComparison.Ordinal); } catch (IOException) { return false; } });
        string[] fds = daemon.DescriptorTargets();
        return (memfd, threads, fds.Count(f => f.Contains("eventfd", StringComparison.Ordinal)), fds.Count(f => f.StartsWith("socket:", StringComparison.Ordinal)));
    }

    private static string Tail(string text) => text.Length > 3000 ? text[^3000..] : text;
}
