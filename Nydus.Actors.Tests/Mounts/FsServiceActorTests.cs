using Akka.Actor;
using Akka.TestKit.Xunit2;
using Nydus.Actors.Config;
using Nydus.Actors.Daemon.Mounts;
using Nydus.Actors.Daemon.Persistence;
using Nydus.Actors.Storage.Cache;
using Nydus.Actors.Tests.Support;
using Nydus.Actors.Vfs;
using Xunit;

namespace Nydus.Actors.Tests.Mounts;

/// <summary>
/// The filesystem service with real images, a real VFS and the real journal actor (on in-memory persistence): the
/// journal records every change of the table with its instance index, a new service restores the table from it at
/// the same indexes, and an instance actor that faults opens its image again without disturbing the others.
/// </summary>
public sealed class FsServiceActorTests : TestKit
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(20);
    private readonly TempDir _dir = new("fssvc");
    private readonly string _config;
    private readonly SmallImage _a, _b, _c;

    public FsServiceActorTests() : base(TestHocon.InMemory())
    {
        _config = SmallImage.Config(_dir.Path);
        _a = SmallImage.Make(_dir.Path, "a", seed: 41, files: 4);
        _b = SmallImage.Make(_dir.Path, "b", seed: 42, files: 4);
        _c = SmallImage.Make(_dir.Path, "c", seed: 43, files: 4);
    }

    private FsBackendMountCmd Command(string mountpoint, SmallImage image) => new()
    {
        FsType = FsBackendType.Rafs,
        Source = image.Image,
        Config = _config,
        Mountpoint = mountpoint,
    };

    private async Task<MountOperationResult> AskAsync(IActorRef service, IMountRequest request)
    {
        var result = await service.Ask<MountOperationResult>(request, Wait);
        Assert.True(result.Succeeded, $"{request} failed: {result.Message}");
        return result;
    }

    /// <summary>
    /// A request whose client gave up (its token cancelled) is not carried out when its turn comes: answered Timeout,
    /// nothing mounted, nothing unmounted, nothing journaled; the queue moves on to the next one.
    /// </summary>
    [Fact]
    public async Task A_request_whose_client_has_gone_is_not_carried_out_later()
    {
        var journal = Sys.ActorOf(DaemonJournalActor.Props("fssvc-" + Guid.NewGuid().ToString("N"), "fssvc"));
        using var vfs = new VirtualFileSystem();
        var service = CreateTestProbe().ChildActorOf(FsServiceActor.Props(vfs, journal, new MountMetricsRegistry(), new BlobCacheRegistry()));
        await AskAsync(service, new MountFilesystem(Command("/a", _a)));

        using var gone = new CancellationTokenSource();
        gone.Cancel();
        var mount = await service.Ask<MountOperationResult>(new MountFilesystem(Command("/late", _b)) { Abandoned = gone.Token }, Wait);
        var umount = await service.Ask<MountOperationResult>(new UmountFilesystem("/a") { Abandoned = gone.Token }, Wait);
        Assert.Equal(MountErrorKind.Timeout, mount.Error);
        Assert.Equal(MountErrorKind.Timeout, umount.Error);
        Assert.Contains("not carried out", mount.Message);

        Assert.Equal(["/a"], vfs.Mounts.Keys);
        var record = await journal.Ask<DaemonRecord>(GetDaemonRecord.Instance, Wait);
        Assert.Equal(["/a"], record.Mounts.Keys);
        await AskAsync(service, new MountFilesystem(Command("/b", _b)));
        Assert.Equal(["/a", "/b"], vfs.Mounts.Keys);
    }

    /// <summary>A mountpoint above another mount (<c>/</c> over <c>/a</c>) would hide it: 409 before any image is opened.</summary>
    [Fact]
    public async Task A_mount_above_or_inside_another_is_refused_before_the_image_is_opened()
    {
        var journal = Sys.ActorOf(DaemonJournalActor.Props("fssvc-" + Guid.NewGuid().ToString("N"), "fssvc"));
        using var vfs = new VirtualFileSystem();
        var service = CreateTestProbe().ChildActorOf(FsServiceActor.Props(vfs, journal, new MountMetricsRegistry(), new BlobCacheRegistry()));
        await AskAsync(service, new MountFilesystem(Command("/x/a", _a)));

        foreach (var mountpoint in new[] { "/", "/x", "/x/a/b" })
        {
            // The source does not exist: a 409 proves the check came before any open.
            var result = await service.Ask<MountOperationResult>(new MountFilesystem(Command(mountpoint, _b) with { Source = "/nonexistent/image" }), Wait);
            Assert.True(result.Error == MountErrorKind.AlreadyExists, $"{mountpoint}: {result.Error} {result.Message}");
        }
        Assert.Equal(["/x/a"], vfs.Mounts.Keys);
    }

    /// <summary>GET /api/v1/daemon reads the daemon's read model, not the actor: the table a mount, remount or umount
    /// left is there by the time its answer comes.</summary>
    [Fact]
    public async Task The_read_model_has_the_table_by_the_time_an_operation_is_answered()
    {
        var journal = Sys.ActorOf(DaemonJournalActor.Props("fssvc-" + Guid.NewGuid().ToString("N"), "fssvc"));
        using var vfs = new VirtualFileSystem();
        var readModel = new Nydus.Actors.Daemon.DaemonReadModel("fssvc", null);
        var service = CreateTestProbe().ChildActorOf(FsServiceActor.Props(vfs, journal, new MountMetricsRegistry(), new BlobCacheRegistry(),
            readModel: readModel));

        await AskAsync(service, new MountFilesystem(Command("/a", _a)));
        Assert.Equal(["/a"], readModel.Current.Backends.Keys);
        Assert.Equal("/a", readModel.Current.Backends["/a"].Mountpoint);
        await AskAsync(service, new MountFilesystem(Command("/b", _b)));
        Assert.Equal(["/a", "/b"], readModel.Current.Backends.Keys);
        var before = readModel.Current;
        await AskAsync(service, new RemountFilesystem(Command("/b", _c)));
        Assert.NotSame(before.Backends["/b"], readModel.Current.Backends["/b"]);
        await AskAsync(service, new UmountFilesystem("/a"));
        Assert.Equal(["/b"], readModel.Current.Backends.Keys);
        Assert.Equal(Nydus.Actors.Daemon.DaemonState.Init, readModel.Current.State);
    }

    [Fact]
    public async Task The_journal_records_the_table_and_a_new_service_restores_it_at_the_same_indexes()
    {
        var persistenceId = "fssvc-" + Guid.NewGuid().ToString("N");
        var journal = Sys.ActorOf(DaemonJournalActor.Props(persistenceId, "fssvc"));
        using var vfs = new VirtualFileSystem();
        var service = CreateTestProbe().ChildActorOf(FsServiceActor.Props(vfs, journal, new MountMetricsRegistry(), new BlobCacheRegistry()));

        await AskAsync(service, new MountFilesystem(Command("/a", _a)));
        await AskAsync(service, new MountFilesystem(Command("/b", _b)));
        await AskAsync(service, new RemountFilesystem(Command("/b", _c)));
        await AskAsync(service, new MountFilesystem(Command("/x", _a)));
        await AskAsync(service, new UmountFilesystem("/x"));

        var record = await journal.Ask<DaemonRecord>(GetDaemonRecord.Instance, Wait);
        Assert.Equal(["/a", "/b"], record.Mounts.Keys);
        Assert.Equal(_c.Image, record.Mounts["/b"].Source);
        Assert.Equal(vfs.IndexOf("/a"), record.Mounts["/a"].VfsIndex);
        Assert.Equal(vfs.IndexOf("/b"), record.Mounts["/b"].VfsIndex);

        // A successor: a new journal actor on the same persistence id, a new VFS, a new service.
        await journal.GracefulStop(Wait);
        var journal2 = Sys.ActorOf(DaemonJournalActor.Props(persistenceId, "fssvc"));
        using var vfs2 = new VirtualFileSystem();
        var service2 = CreateTestProbe().ChildActorOf(FsServiceActor.Props(vfs2, journal2, new MountMetricsRegistry(), new BlobCacheRegistry()));
        var restored = await AskAsync(service2, RestoreMounts.Instance);

        Assert.Contains("restored 2", restored.Message);
        Assert.Equal(["/a", "/b"], vfs2.Mounts.Keys);
        Assert.Equal(vfs.IndexOf("/a"), vfs2.IndexOf("/a"));
        Assert.Equal(vfs.IndexOf("/b"), vfs2.IndexOf("/b"));
    }

    [Fact]
    public async Task A_faulting_instance_actor_opens_its_image_again_and_leaves_the_others_alone()
    {
        var journal = Sys.ActorOf(DaemonJournalActor.Props("fssvc-" + Guid.NewGuid().ToString("N"), "fssvc"));
        using var vfs = new VirtualFileSystem();
        var service = CreateTestProbe().ChildActorOf(FsServiceActor.Props(vfs, journal, new MountMetricsRegistry(), new BlobCacheRegistry()));
        await AskAsync(service, new MountFilesystem(Command("/a", _a)));
        await AskAsync(service, new MountFilesystem(Command("/b", _b)));
        int indexOfA = vfs.IndexOf("/a"), indexOfB = vfs.IndexOf("/b");
        var fsOfB = vfs.Mounts["/b"];

        // The first child owns /a. Kill makes it throw ActorKilledException; the service's strategy restarts it.
        var childOfA = await Sys.ActorSelection(service.Path / "instance-1").ResolveOne(Wait);
        childOfA.Tell(Kill.Instance);

        await AwaitConditionAsync(() => Task.FromResult(vfs.IndexOf("/a") is > 0 and var now && now != indexOfA), Wait);
        Assert.Equal(["/a", "/b"], vfs.Mounts.Keys);
        Assert.Equal(indexOfB, vfs.IndexOf("/b"));
        Assert.Same(fsOfB, vfs.Mounts["/b"]);
        // The table still works: the reopened instance unmounts like any other.
        await AskAsync(service, new UmountFilesystem("/a"));
        Assert.Equal(["/b"], vfs.Mounts.Keys);
    }

    [Fact]
    public async Task An_image_that_fails_to_open_changes_nothing()
    {
        var journal = Sys.ActorOf(DaemonJournalActor.Props("fssvc-" + Guid.NewGuid().ToString("N"), "fssvc"));
        using var vfs = new VirtualFileSystem();
        var service = CreateTestProbe().ChildActorOf(FsServiceActor.Props(vfs, journal, new MountMetricsRegistry(), new BlobCacheRegistry()));
        await AskAsync(service, new MountFilesystem(Command("/a", _a)));

        var corrupt = Path.Combine(_dir.Path, "corrupt.img");
        var bytes = File.ReadAllBytes(_b.Image);
        Array.Clear(bytes, 1024, 128); // the EROFS superblock
        File.WriteAllBytes(corrupt, bytes);
        var failed = await service.Ask<MountOperationResult>(new MountFilesystem(Command("/b", new SmallImage(corrupt, _b.Source))), Wait);
        Assert.Equal(MountErrorKind.Invalid, failed.Error);
        var remount = await service.Ask<MountOperationResult>(new RemountFilesystem(Command("/a", new SmallImage(corrupt, _b.Source))), Wait);
        Assert.Equal(MountErrorKind.Invalid, remount.Error);

        Assert.Equal(["/a"], vfs.Mounts.Keys);
        var record = await journal.Ask<DaemonRecord>(GetDaemonRecord.Instance, Wait);
        Assert.Equal(["/a"], record.Mounts.Keys);
        Assert.Equal(_a.Image, record.Mounts["/a"].Source);
    }

    protected override void Dispose(bool disposing)
    {
        base.Dispose(disposing);
        if (disposing) _dir.Dispose();
    }
}
