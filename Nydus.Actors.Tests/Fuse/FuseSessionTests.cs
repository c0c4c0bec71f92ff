using System.Collections.Concurrent;
using Nydus.Actors.Fuse.Session;
using Nydus.Actors.Interop;
using Nydus.Actors.Tests.Support;
using Xunit;

namespace Nydus.Actors.Tests.Fuse;

/// <summary>FuseSession and FuseMount on real mounts: faults, stop/start on one descriptor, abort, fusermount3, notifications.</summary>
public class FuseSessionTests
{
    private static readonly TimeSpan Prompt = TimeSpan.FromSeconds(3);

    [FuseFact]
    public void ThrowingFileSystem_CostsOneRequestEio_WorkerKeepsServing()
    {
        FuseFaultInjectingFileSystem? faulty = null;
        using var mount = FuseTestMount.StartPassthrough(writable: false, workers: 1,
            prepare: backing => File.WriteAllText(Path.Combine(backing, "fine.txt"), "still served"),
            wrap: passthrough => faulty = new FuseFaultInjectingFileSystem(passthrough));

        Assert.Equal(Errno.EIO, FusePosix.Open(mount.Mounted("boom"), Libc.O_RDONLY));
        Assert.Equal("still served", File.ReadAllText(mount.Mounted("fine.txt")));

        faulty!.FailReads = true;
        Assert.ThrowsAny<IOException>(() => File.ReadAllText(mount.Mounted("fine.txt")));
        faulty.FailReads = false;
        Assert.Equal("still served", File.ReadAllText(mount.Mounted("fine.txt")));

        // The kernel may retry a failed READ (readahead, then the read itself), so count at least one per fault.
        Assert.True(faulty.Thrown >= 2, $"{faulty.Thrown} injected failures");
        Assert.Equal(faulty.Thrown, mount.Session.Dispatcher.Failures);
        Assert.Equal(1, mount.Session.RunningWorkers);
    }

    [FuseFact]
    public void Stop_WakesIdleWorkersPromptly_MountStays_StartServesQueuedRequests()
    {
        using var mount = FuseTestMount.StartPassthrough(writable: false, workers: 4,
            prepare: backing => File.WriteAllText(Path.Combine(backing, "file"), "content"));
        Assert.Equal("content", File.ReadAllText(mount.Mounted("file")));
        var exits = new ConcurrentQueue<FuseWorkerExit>();

        mount.Session.Stop();
        Assert.True(mount.Session.Wait(Prompt), "workers blocked in poll() did not wake on stop");
        Assert.Equal(0, mount.Session.RunningWorkers);
        Assert.True(mount.IsMounted);
        Assert.False(mount.Device.Handle.IsClosed);

        // A request made while nobody serves waits in the kernel queue, not failed.
        Task<string> pending = Task.Factory.StartNew(() => File.ReadAllText(mount.Mounted("file")), TaskCreationOptions.LongRunning);
        Assert.False(pending.Wait(TimeSpan.FromMilliseconds(300)), "a request was answered while no worker ran");

        int generation = mount.Session.Start(exits.Enqueue);
        Assert.True(pending.Wait(TimeSpan.FromSeconds(10)), "the queued request was not served after restart");
        Assert.Equal("content", pending.Result);

        mount.Session.Stop();
        Assert.True(mount.Session.Wait(Prompt));
        Assert.Equal(4, exits.Count);
        Assert.All(exits, exit => Assert.Equal((generation, FuseWorkerExitReason.Stopped), (exit.Generation, exit.Reason)));
    }

    [FuseFact]
    public void Prepare_ParksWorkersUntilArm_StopEndsParkedWorkers()
    {
        using var mount = FuseTestMount.StartPassthrough(writable: false, workers: 4,
            prepare: backing => File.WriteAllText(Path.Combine(backing, "file"), "content"));
        Assert.Equal("content", File.ReadAllText(mount.Mounted("file")));
        mount.Session.Stop();
        Assert.True(mount.Session.Wait(Prompt));
        var exits = new ConcurrentQueue<FuseWorkerExit>();

        // Parked: the threads run, yet a request waits in the kernel queue until they are armed.
        int generation = mount.Session.Prepare(exits.Enqueue);
        Assert.Equal(4, mount.Session.RunningWorkers);
        Assert.False(mount.Session.Armed);
        Task<string> pending = Task.Factory.StartNew(() => File.ReadAllText(mount.Mounted("file")), TaskCreationOptions.LongRunning);
        Assert.False(pending.Wait(TimeSpan.FromMilliseconds(300)), "a parked worker answered a request");
        Assert.Empty(exits);

        mount.Session.Arm();
        Assert.True(mount.Session.Armed);
        Assert.True(pending.Wait(TimeSpan.FromSeconds(10)), "the queued request was not served once the workers were armed");
        Assert.Equal("content", pending.Result);
        Assert.Throws<InvalidOperationException>(() => mount.Session.Arm());

        mount.Session.Stop();
        Assert.True(mount.Session.Wait(Prompt));
        // Workers that were never armed end on stop as well.
        int parked = mount.Session.Prepare(exits.Enqueue);
        mount.Session.Stop();
        Assert.True(mount.Session.Wait(Prompt), "parked workers did not end on stop");
        Assert.Equal(0, mount.Session.RunningWorkers);
        Assert.Equal(8, exits.Count);
        Assert.All(exits, exit => Assert.Equal(FuseWorkerExitReason.Stopped, exit.Reason));
        Assert.Equal(4, exits.Count(exit => exit.Generation == generation));
        Assert.Equal(4, exits.Count(exit => exit.Generation == parked));
        Assert.True(mount.IsMounted);
    }

    [FuseFact]
    public void Unmount_EndsWorkersWithUnmounted()
    {
        var exits = new ConcurrentQueue<FuseWorkerExit>();
        using var mount = FuseTestMount.StartPassthrough(writable: false, workers: 2, startWorkers: false);
        mount.Session.Start(exits.Enqueue);
        Assert.True(Directory.Exists(mount.Mounted(".")));

        Assert.True(FuseMount.Unmount(mount.MountPoint));

        Assert.True(mount.Session.Wait(TimeSpan.FromSeconds(10)), "workers did not notice the unmount");
        Assert.False(FuseMount.IsMounted(mount.MountPoint));
        Assert.False(FuseMount.Unmount(mount.MountPoint));
        Assert.Equal(2, exits.Count);
        Assert.All(exits, exit => Assert.Equal((FuseWorkerExitReason.Unmounted, Errno.ENODEV), (exit.Reason, exit.Errno)));
    }

    [FuseFact]
    public void Abort_ThroughConnectionId_FailsRequestsAndEndsWorkers()
    {
        var exits = new ConcurrentQueue<FuseWorkerExit>();
        using var mount = FuseTestMount.StartPassthrough(writable: false, workers: 2, startWorkers: false,
            prepare: backing => File.WriteAllText(Path.Combine(backing, "file"), "x"));
        mount.Session.Start(exits.Enqueue);
        Assert.Equal("x", File.ReadAllText(mount.Mounted("file")));

        uint? connection = FuseMount.FindConnectionId(mount.MountPoint);
        Assert.NotNull(connection);
        FuseMount.Abort(connection.Value);

        Assert.True(Directory.Exists($"/sys/fs/fuse/connections/{connection}"));
        Assert.True(mount.Session.Wait(TimeSpan.FromSeconds(10)), "workers did not notice the abort");
        Assert.All(exits, exit => Assert.Equal(FuseWorkerExitReason.Unmounted, exit.Reason));
        Assert.Equal(Errno.ENOTCONN, FusePosix.Open(mount.Mounted("file"), Libc.O_RDONLY));
        Assert.True(mount.IsMounted, "abort ends the connection, not the mount");
    }

    [FuseFact]
    public void FindConnectionId_MatchesDeviceMinorAndIsNullWithoutMount()
    {
        using var mount = FuseTestMount.StartPassthrough(writable: false);
        uint? connection = FuseMount.FindConnectionId(mount.MountPoint);
        Assert.NotNull(connection);
        string device = File.ReadLines("/proc/self/mountinfo").Single(line => line.Split(' ')[4] == mount.MountPoint).Split(' ')[2];
        Assert.Equal($"0:{connection}", device);
        Assert.Null(FuseMount.FindConnectionId(mount.Backing));
    }

    [FuseFact]
    public void Mount_OnMissingDirectory_FailsWithMountFailedAndErrno()
    {
        string missing = Path.Combine(Path.GetTempPath(), "nydus-missing-" + Guid.NewGuid().ToString("N"));

        var failure = Assert.Throws<Nydus.Actors.Fuse.FuseException>(() => FuseMount.Mount(missing, new FuseMountOptions()));

        Assert.Equal(Nydus.Actors.Fuse.FuseErrorKind.MountFailed, failure.Kind);
        Assert.Equal(Errno.ENOENT, failure.Errno);
        Assert.Contains(missing, failure.Message);
        Assert.False(FuseMount.IsMounted(missing));
    }

    [FuseFact]
    public void Fusermount_Fallback_MountsAndServes()
    {
        using var mount = FuseTestMount.StartPassthrough(writable: false,
            mountOptions: new FuseMountOptions { ForceFusermount = true, ReadOnly = true, Source = "passthrough", Subtype = "nydus" },
            prepare: backing => File.WriteAllText(Path.Combine(backing, "file"), "via fusermount3"));

        Assert.Equal("via fusermount3", File.ReadAllText(mount.Mounted("file")));
        MountInfoEntry? entry = MountInfoEntry.Find(mount.MountPoint);
        Assert.NotNull(entry);
        Assert.Equal("fuse.nydus", entry.FileSystemType);
        Assert.Equal(Errno.EROFS, FusePosix.Mkdir(mount.Mounted("dir")));
    }

    [FuseFact]
    public void Notifier_InvalidateEntry_DropsCachedDentry_ResendIsAccepted()
    {
        using var mount = FuseTestMount.StartPassthrough(writable: false, cacheTimeout: TimeSpan.FromMinutes(5),
            prepare: backing => File.WriteAllText(Path.Combine(backing, "victim"), "x"));
        Assert.True(File.Exists(mount.Mounted("victim")));

        File.Delete(mount.Backed("victim"));
        Assert.True(File.Exists(mount.Mounted("victim")), "the dentry should still be cached for five minutes");

        Assert.Equal(Errno.Success, mount.Session.Notifier.InvalidateEntry(1, "victim"u8));
        Assert.False(File.Exists(mount.Mounted("victim")));

        Assert.Equal(Errno.Success, mount.Session.Notifier.InvalidateInode(1));
        Assert.Equal(Errno.Success, mount.Session.Notifier.Resend());
        Assert.True(Directory.Exists(mount.Mounted(".")));
    }
}
