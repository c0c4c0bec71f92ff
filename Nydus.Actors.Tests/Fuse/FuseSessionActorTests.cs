using Akka.Actor;
using Nydus.Actors.Fuse;
using Nydus.Actors.Fuse.Session;
using Nydus.Actors.Interop;
using Nydus.Actors.Tests.Support;
using Xunit;

namespace Nydus.Actors.Tests.Fuse;

/// <summary>FuseSessionActor driving a real mount through TestKit.</summary>
public class FuseSessionActorTests : Akka.TestKit.Xunit2.TestKit
{
    private static readonly TimeSpan Prompt = TimeSpan.FromSeconds(3);

    public FuseSessionActorTests(Xunit.Abstractions.ITestOutputHelper output)
        : base(output: output)
    {
    }

    [FuseFact]
    public async Task Actor_should_start_stop_and_restart_workers_on_the_same_descriptor()
    {
        using var mount = FuseTestMount.StartPassthrough(writable: false, workers: 3, startWorkers: false,
            prepare: backing => File.WriteAllText(Path.Combine(backing, "file"), "served"));
        IActorRef actor = Sys.ActorOf(FuseSessionActor.Props(mount.Session));
        try
        {
            actor.Tell(StartWorkers.Instance, TestActor);
            WorkersStarted first = await ExpectMsgAsync<WorkersStarted>(Prompt);
            Assert.Equal(3, first.Count);
            Assert.Equal("served", File.ReadAllText(mount.Mounted("file")));

            actor.Tell(StopWorkers.Instance, TestActor);
            WorkersStopped stopped = await ExpectMsgAsync<WorkersStopped>(Prompt);
            Assert.Equal(first.Generation, stopped.Generation);
            Assert.Equal(0, mount.Session.RunningWorkers);
            Assert.True(mount.IsMounted, "stopping workers must leave the mount alone");
            Assert.False(mount.Device.Handle.IsClosed);

            actor.Tell(StartWorkers.Instance, TestActor);
            WorkersStarted second = await ExpectMsgAsync<WorkersStarted>(Prompt);
            Assert.Equal(first.Generation + 1, second.Generation);
            Assert.Equal("served", File.ReadAllText(mount.Mounted("file")));
        }
        finally
        {
            await StopActorAsync(actor);
        }
    }

    [FuseFact]
    public async Task Actor_should_answer_start_while_running_without_starting_twice()
    {
        using var mount = FuseTestMount.StartPassthrough(writable: false, workers: 2, startWorkers: false);
        IActorRef actor = Sys.ActorOf(FuseSessionActor.Props(mount.Session));
        try
        {
            actor.Tell(StartWorkers.Instance, TestActor);
            WorkersStarted first = await ExpectMsgAsync<WorkersStarted>(Prompt);
            actor.Tell(StartWorkers.Instance, TestActor);
            WorkersStarted again = await ExpectMsgAsync<WorkersStarted>(Prompt);
            Assert.Equal(first.Generation, again.Generation);
            Assert.Equal(2, mount.Session.RunningWorkers);
        }
        finally
        {
            await StopActorAsync(actor);
        }
    }

    [FuseFact]
    public async Task Actor_should_report_session_ended_when_unmounted()
    {
        using var mount = FuseTestMount.StartPassthrough(writable: false, workers: 2, startWorkers: false);
        IActorRef actor = Sys.ActorOf(FuseSessionActor.Props(mount.Session));
        try
        {
            actor.Tell(StartWorkers.Instance, TestActor);
            WorkersStarted started = await ExpectMsgAsync<WorkersStarted>(Prompt);
            Assert.True(Directory.Exists(mount.Mounted(".")));

            Assert.True(FuseMount.Unmount(mount.MountPoint));

            SessionEnded ended = await ExpectMsgAsync<SessionEnded>(TimeSpan.FromSeconds(10));
            Assert.Equal(started.Generation, ended.Generation);
            Assert.Equal(Errno.ENODEV, ended.Errno);
            Assert.Equal(0, mount.Session.RunningWorkers);
        }
        finally
        {
            await StopActorAsync(actor);
        }
    }

    [FuseFact]
    public async Task Stopping_the_actor_should_end_workers_but_not_the_mount()
    {
        using var mount = FuseTestMount.StartPassthrough(writable: false, workers: 2, startWorkers: false,
            prepare: backing => File.WriteAllText(Path.Combine(backing, "file"), "kept"));
        IActorRef actor = Sys.ActorOf(FuseSessionActor.Props(mount.Session));
        actor.Tell(StartWorkers.Instance, TestActor);
        await ExpectMsgAsync<WorkersStarted>(Prompt);

        await StopActorAsync(actor);

        Assert.Equal(0, mount.Session.RunningWorkers);
        Assert.True(mount.IsMounted);

        // A new actor on the same session (as after a restart) serves the same mount again.
        IActorRef successor = Sys.ActorOf(FuseSessionActor.Props(mount.Session));
        try
        {
            successor.Tell(StartWorkers.Instance, TestActor);
            await ExpectMsgAsync<WorkersStarted>(Prompt);
            Assert.Equal("kept", File.ReadAllText(mount.Mounted("file")));
        }
        finally
        {
            await StopActorAsync(successor);
        }
    }

    [Fact]
    public void Decide_should_restart_on_worker_fault_and_stop_on_other_fuse_errors()
    {
        Assert.Equal(Directive.Restart, FuseSessionActor.Decide(new FuseException(FuseErrorKind.WorkerFaulted, Errno.EIO, "fault")));
        Assert.Equal(Directive.Stop, FuseSessionActor.Decide(new FuseException(FuseErrorKind.MountFailed, Errno.EPERM, "mount")));
        Assert.Equal(Directive.Escalate, FuseSessionActor.Decide(new InvalidOperationException()));
    }

    [Fact]
    public async Task Worker_fault_should_restart_workers_on_the_same_descriptor_under_supervision()
    {
        // A pipe stands in for /dev/fuse: once its writer closes, read() returns 0, which no FUSE device
        // does, so every worker started on it faults.
        (Microsoft.Win32.SafeHandles.SafeFileHandle readEnd, Microsoft.Win32.SafeHandles.SafeFileHandle writeEnd) = FusePosix.Pipe();
        using var passthrough = new Nydus.Actors.Passthrough.PassthroughFileSystem(Path.GetTempPath(), writable: false);
        using var session = new FuseSession(readEnd, passthrough, new FuseSessionOptions { WorkerCount = 2 });
        IActorRef parent = Sys.ActorOf(Props.Create(() => new RestartOnceParent(session, TestActor)));
        IActorRef child = await ExpectMsgAsync<IActorRef>(Prompt);

        child.Tell(StartWorkers.Instance, TestActor);
        WorkersStarted started = await ExpectMsgAsync<WorkersStarted>(Prompt);
        Assert.Equal(2, session.RunningWorkers);

        await EventFilter.Exception<FuseException>().ExpectAsync(2, async () =>
        {
            writeEnd.Dispose();
            await ExpectMsgAsync<ChildStopped>(TimeSpan.FromSeconds(15));
        });

        // First fault: restarted, and the restart started a new generation on the same descriptor; second
        // fault: the parent's retry budget (1) is spent and the actor stops.
        Assert.True(session.Generation > started.Generation, $"generation {session.Generation} after start {started.Generation}");
        Assert.False(readEnd.IsClosed);
        Sys.Stop(parent);
        readEnd.Dispose();
    }

    private sealed record ChildStopped(IActorRef Child);

    /// <summary>Supervises a FuseSessionActor with its decider and a budget of one restart; reports the child's end.</summary>
    private sealed class RestartOnceParent : UntypedActor
    {
        private readonly IActorRef _probe;

        public RestartOnceParent(FuseSession session, IActorRef probe)
        {
            _probe = probe;
            IActorRef child = Context.ActorOf(FuseSessionActor.Props(session), "session");
            Context.Watch(child);
            probe.Tell(child);
        }

        protected override SupervisorStrategy SupervisorStrategy() =>
            new OneForOneStrategy(1, TimeSpan.FromMinutes(1), FuseSessionActor.Decide);

        protected override void OnReceive(object message)
        {
            // Terminated itself is only delivered to watchers, so it is passed on wrapped.
            if (message is Terminated terminated)
            {
                _probe.Tell(new ChildStopped(terminated.ActorRef));
            }
        }
    }

    private async Task StopActorAsync(IActorRef actor)
    {
        Watch(actor);
        Sys.Stop(actor);
        await ExpectTerminatedAsync(actor, TimeSpan.FromSeconds(15));
        Unwatch(actor);
    }
}
