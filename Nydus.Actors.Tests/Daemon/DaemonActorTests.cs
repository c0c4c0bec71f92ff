using Akka.Actor;
using Akka.TestKit;
using Akka.TestKit.Xunit2;
using Nydus.Actors.Daemon;
using Nydus.Actors.Tests.Support;
using Xunit;

namespace Nydus.Actors.Tests.Daemon;

public class DaemonActorTests : TestKit
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(10);
    private readonly TestProbe _service;

    public DaemonActorTests() : base(TestHocon.InMemory())
    {
        _service = CreateTestProbe("service");
    }

    /// <summary>A daemon whose service child forwards every action to the probe, which answers for it.</summary>
    // The outcome of the daemon NewDaemon made last (the host reads it: why it stopped, whether it left to a successor).
    private DaemonOutcome _outcome = null!;

    private IActorRef NewDaemon(TimeSpan? actionTimeout = null, bool withService = true)
    {
        var probe = _service.Ref;
        var settings = new DaemonSettings("test-" + Guid.NewGuid().ToString("N"), null, DaemonKind.Fuse, "/nonexistent",
            withService ? Props.Create(() => new ForwardingService(probe)) : null,
            actionTimeout ?? TimeSpan.FromSeconds(5));
        _outcome = settings.Outcome;
        return Sys.ActorOf(DaemonActor.Props(settings));
    }

    private async Task<DaemonCommandResult> SendAsync(IActorRef daemon, DaemonInput input, DaemonAction? expectAction = null, string? actionError = null)
    {
        daemon.Tell(new DaemonCommand(input), TestActor);
        if (expectAction is { } action)
        {
            var request = await _service.ExpectMsgAsync<ServiceActionRequest>(Wait);
            Assert.Equal(action, request.Action);
            _service.Reply(new ServiceActionResult(action, actionError));
        }
        return await ExpectMsgAsync<DaemonCommandResult>(Wait);
    }

    private async Task<IActorRef> RunningDaemonAsync()
    {
        var daemon = NewDaemon();
        Assert.True((await SendAsync(daemon, DaemonInput.Mount)).Succeeded);
        var started = await SendAsync(daemon, DaemonInput.Start, DaemonAction.StartService);
        Assert.Equal(DaemonState.Running, started.State);
        return daemon;
    }

    private async Task<DaemonState> ReportedAsync(IActorRef daemon) =>
        (await daemon.Ask<DaemonInfo>(GetDaemonInfo.Instance, Wait)).State;

    [Fact]
    public async Task A_successor_waiting_for_a_takeover_records_its_start_only_once_it_runs()
    {
        var probe = _service.Ref;
        var settings = new DaemonSettings("test-" + Guid.NewGuid().ToString("N"), null, DaemonKind.Fuse, "/nonexistent",
            Props.Create(() => new ForwardingService(probe)), TimeSpan.FromSeconds(5)) { DeferStartRecord = true };
        var daemon = Sys.ActorOf(DaemonActor.Props(settings));
        var record = await daemon.Ask<Nydus.Actors.Daemon.Persistence.DaemonRecord>(Nydus.Actors.Daemon.Persistence.GetDaemonRecord.Instance, Wait);
        Assert.Equal(0, record.StartCount);

        Assert.True((await SendAsync(daemon, DaemonInput.Takeover, DaemonAction.Restore)).Succeeded);
        record = await daemon.Ask<Nydus.Actors.Daemon.Persistence.DaemonRecord>(Nydus.Actors.Daemon.Persistence.GetDaemonRecord.Instance, Wait);
        Assert.Equal(0, record.StartCount);

        Assert.Equal(DaemonState.Running, (await SendAsync(daemon, DaemonInput.Start, DaemonAction.StartService)).State);
        await AwaitAssertAsync(async () =>
        {
            var after = await daemon.Ask<Nydus.Actors.Daemon.Persistence.DaemonRecord>(Nydus.Actors.Daemon.Persistence.GetDaemonRecord.Instance, Wait);
            Assert.Equal(1, after.StartCount);
        }, Wait);
    }

    [Fact]
    public async Task Mount_leaves_reported_state_INIT_until_start_succeeds()
    {
        var daemon = NewDaemon();
        var mounted = await SendAsync(daemon, DaemonInput.Mount);
        Assert.True(mounted.Succeeded);
        Assert.Equal(DaemonState.Init, mounted.State);
        var started = await SendAsync(daemon, DaemonInput.Start, DaemonAction.StartService);
        Assert.True(started.Succeeded);
        Assert.Equal(DaemonState.Running, started.State);
        await _service.ExpectNoMsgAsync(TimeSpan.FromMilliseconds(100));
    }

    [Fact]
    public async Task The_read_model_has_each_reported_state_by_the_time_the_input_is_answered()
    {
        // GET /api/v1/daemon reads this model, not the actor: a client that got an input's answer must read the state
        // it led to, and a daemon whose actor does not exist yet reads INIT.
        var probe = _service.Ref;
        var settings = new DaemonSettings("test-" + Guid.NewGuid().ToString("N"), "/run/supervisor.sock", DaemonKind.Fuse, "/nonexistent",
            Props.Create(() => new ForwardingService(probe)), TimeSpan.FromSeconds(5));
        Assert.Equal(DaemonState.Init, settings.ReadModel.Current.State);
        Assert.Equal(settings.Id, settings.ReadModel.Current.Id);
        Assert.Equal("/run/supervisor.sock", settings.ReadModel.Current.Supervisor);
        var daemon = Sys.ActorOf(DaemonActor.Props(settings));

        Assert.True((await SendAsync(daemon, DaemonInput.Mount)).Succeeded);
        Assert.Equal(DaemonState.Init, settings.ReadModel.Current.State);
        Assert.True((await SendAsync(daemon, DaemonInput.Start, DaemonAction.StartService)).Succeeded);
        Assert.Equal(DaemonState.Running, settings.ReadModel.Current.State);
        // A refused input leaves it where the machine is.
        Assert.False((await SendAsync(daemon, DaemonInput.Start)).Succeeded);
        Assert.Equal(DaemonState.Running, settings.ReadModel.Current.State);
        Assert.Equal(DaemonState.Running, await ReportedAsync(daemon));
    }

    [Theory]
    [InlineData(DaemonInput.Start)]
    [InlineData(DaemonInput.Exit)]
    public async Task Init_rejects_inputs_it_has_no_transition_for(DaemonInput input)
    {
        var daemon = NewDaemon();
        var result = await SendAsync(daemon, input);
        Assert.Equal(DaemonErrorKind.UnexpectedEvent, result.Error?.Kind);
        Assert.Equal(DaemonState.Init, result.State);
        // The machine did not move: Mount is still accepted.
        Assert.True((await SendAsync(daemon, DaemonInput.Mount)).Succeeded);
    }

    [Theory]
    [InlineData(DaemonInput.Mount)]
    [InlineData(DaemonInput.Takeover)]
    [InlineData(DaemonInput.Start)]
    [InlineData(DaemonInput.Exit)]
    public async Task Running_rejects_everything_but_stop(DaemonInput input)
    {
        var daemon = await RunningDaemonAsync();
        var result = await SendAsync(daemon, input);
        Assert.Equal(DaemonErrorKind.UnexpectedEvent, result.Error?.Kind);
        Assert.Equal(DaemonState.Running, await ReportedAsync(daemon));
        await _service.ExpectNoMsgAsync(TimeSpan.FromMilliseconds(100));
    }

    [Theory]
    [InlineData(DaemonInput.Mount)]
    [InlineData(DaemonInput.Takeover)]
    public async Task Ready_rejects_mount_and_takeover(DaemonInput input)
    {
        var daemon = NewDaemon();
        await SendAsync(daemon, DaemonInput.Mount);
        var result = await SendAsync(daemon, input);
        Assert.Equal(DaemonErrorKind.UnexpectedEvent, result.Error?.Kind);
    }

    [Fact]
    public async Task Running_stop_terminates_service_without_unmounting_then_start_again()
    {
        var daemon = await RunningDaemonAsync();
        var stopped = await SendAsync(daemon, DaemonInput.Stop, DaemonAction.TerminateService);
        Assert.Equal(DaemonState.Ready, stopped.State);
        var again = await SendAsync(daemon, DaemonInput.Start, DaemonAction.StartService);
        Assert.Equal(DaemonState.Running, again.State);
    }

    [Fact]
    public async Task Ready_stop_unmounts_and_the_daemon_actor_ends()
    {
        var daemon = NewDaemon();
        Watch(daemon);
        await SendAsync(daemon, DaemonInput.Mount);
        var result = await SendAsync(daemon, DaemonInput.Stop, DaemonAction.Umount);
        Assert.Equal(DaemonState.Stopped, result.State);
        await ExpectTerminatedAsync(daemon, Wait);
        // A stop is not an exit: the actor tree is stopped (instances disposed), nothing is left to a successor.
        Assert.False(_outcome.LeftToSuccessor.IsCompleted);
    }

    [Fact]
    public async Task Init_stop_ends_without_any_service_action()
    {
        var daemon = NewDaemon();
        Watch(daemon);
        var result = await SendAsync(daemon, DaemonInput.Stop);
        Assert.Equal(DaemonState.Stopped, result.State);
        await _service.ExpectNoMsgAsync(TimeSpan.FromMilliseconds(100));
        await ExpectTerminatedAsync(daemon, Wait);
    }

    [Fact]
    public async Task Ready_exit_stops_the_state_machine_without_service_action()
    {
        var daemon = NewDaemon();
        Watch(daemon);
        await SendAsync(daemon, DaemonInput.Mount);
        var result = await SendAsync(daemon, DaemonInput.Exit);
        Assert.Equal(DaemonState.Stopped, result.State);
        await _service.ExpectNoMsgAsync(TimeSpan.FromMilliseconds(100));
        await ExpectLeftToSuccessorAsync(daemon);
    }

    /// <summary>An exit leaves the mount to a successor: once the journal confirmed its writes the host is told the
    /// process may end, and the actor tree is not torn down (the process's end releases it); the daemon answers as
    /// STOPPED meanwhile.</summary>
    private async Task ExpectLeftToSuccessorAsync(IActorRef daemon)
    {
        await _outcome.LeftToSuccessor.WaitAsync(Wait);
        Assert.Null(_outcome.Failure);
        Assert.NotEqual(0, _outcome.JournalFlushedAt);
        Assert.True(_outcome.JournalFlushedAt >= _outcome.StoppedAt, "the host was told before the daemon stopped");
        await ExpectNoMsgAsync(TimeSpan.FromMilliseconds(200));
        Assert.Equal(DaemonState.Stopped, await ReportedAsync(daemon));
        Assert.Equal(DaemonErrorKind.Stopped, (await SendAsync(daemon, DaemonInput.Start)).Error?.Kind);
    }

    [Fact]
    public async Task Takeover_in_init_restores_through_the_service()
    {
        var daemon = NewDaemon();
        var result = await SendAsync(daemon, DaemonInput.Takeover, DaemonAction.Restore);
        Assert.True(result.Succeeded);
        Assert.Equal(DaemonState.Ready, result.State);
    }

    [Fact]
    public async Task A_failed_action_moves_the_machine_but_not_the_reported_state()
    {
        var daemon = NewDaemon();
        await SendAsync(daemon, DaemonInput.Mount);
        var failed = await SendAsync(daemon, DaemonInput.Start, DaemonAction.StartService, actionError: "no workers");
        Assert.Equal(DaemonErrorKind.ActionFailed, failed.Error?.Kind);
        Assert.Contains("no workers", failed.Error!.Message);
        Assert.Equal(DaemonState.Init, failed.State);
        // As upstream: the machine is in Running now, so Start is unexpected and Stop terminates the service.
        Assert.Equal(DaemonErrorKind.UnexpectedEvent, (await SendAsync(daemon, DaemonInput.Start)).Error?.Kind);
        Assert.True((await SendAsync(daemon, DaemonInput.Stop, DaemonAction.TerminateService)).Succeeded);
    }

    [Fact]
    public async Task An_action_that_never_answers_times_out_with_an_error()
    {
        var daemon = NewDaemon(actionTimeout: TimeSpan.FromMilliseconds(300));
        await SendAsync(daemon, DaemonInput.Mount);
        daemon.Tell(new DaemonCommand(DaemonInput.Start), TestActor);
        await _service.ExpectMsgAsync<ServiceActionRequest>(Wait);
        var result = await ExpectMsgAsync<DaemonCommandResult>(Wait);
        Assert.Equal(DaemonErrorKind.ActionFailed, result.Error?.Kind);
        Assert.Contains("timed out", result.Error!.Message);
        // A late answer to the timed-out action changes nothing.
        _service.Reply(ServiceActionResult.Done(DaemonAction.StartService));
        Assert.Equal(DaemonState.Init, await ReportedAsync(daemon));
    }

    [Fact]
    public async Task Inputs_wait_while_an_action_runs_and_info_is_answered_meanwhile()
    {
        var daemon = await RunningDaemonAsync();
        daemon.Tell(new DaemonCommand(DaemonInput.Stop), TestActor);
        await _service.ExpectMsgAsync<ServiceActionRequest>(Wait);
        // While TerminateService runs: Start is queued behind it, info is answered at once.
        daemon.Tell(new DaemonCommand(DaemonInput.Start), TestActor);
        Assert.Equal(DaemonState.Running, await ReportedAsync(daemon));
        _service.Reply(ServiceActionResult.Done(DaemonAction.TerminateService));
        Assert.Equal(DaemonState.Ready, (await ExpectMsgAsync<DaemonCommandResult>(Wait)).State);
        var start = await _service.ExpectMsgAsync<ServiceActionRequest>(Wait);
        Assert.Equal(DaemonAction.StartService, start.Action);
        _service.Reply(ServiceActionResult.Done(DaemonAction.StartService));
        Assert.Equal(DaemonState.Running, (await ExpectMsgAsync<DaemonCommandResult>(Wait)).State);
    }

    [Fact]
    public async Task Trigger_exit_from_running_terminates_service_and_never_unmounts()
    {
        var daemon = await RunningDaemonAsync();
        Watch(daemon);
        daemon.Tell(TriggerExit.Instance, TestActor);
        var terminate = await _service.ExpectMsgAsync<ServiceActionRequest>(Wait);
        Assert.Equal(DaemonAction.TerminateService, terminate.Action);
        _service.Reply(ServiceActionResult.Done(DaemonAction.TerminateService));
        var result = await ExpectMsgAsync<DaemonCommandResult>(Wait);
        Assert.Equal(DaemonState.Stopped, result.State);
        await _service.ExpectNoMsgAsync(TimeSpan.FromMilliseconds(100));
        await ExpectLeftToSuccessorAsync(daemon);
    }

    [Fact]
    public async Task Trigger_stop_from_running_terminates_then_unmounts()
    {
        var daemon = await RunningDaemonAsync();
        daemon.Tell(TriggerStop.Instance, TestActor);
        foreach (var expected in new[] { DaemonAction.TerminateService, DaemonAction.Umount })
        {
            var request = await _service.ExpectMsgAsync<ServiceActionRequest>(Wait);
            Assert.Equal(expected, request.Action);
            _service.Reply(ServiceActionResult.Done(expected));
        }
        Assert.Equal(DaemonState.Stopped, (await ExpectMsgAsync<DaemonCommandResult>(Wait)).State);
    }

    [Fact]
    public async Task A_service_that_ends_on_its_own_shuts_the_daemon_down()
    {
        var daemon = await RunningDaemonAsync();
        Watch(daemon);
        daemon.Tell(new ServiceEnded("kernel unmounted"));
        foreach (var expected in new[] { DaemonAction.TerminateService, DaemonAction.Umount })
        {
            var request = await _service.ExpectMsgAsync<ServiceActionRequest>(Wait);
            Assert.Equal(expected, request.Action);
            _service.Reply(ServiceActionResult.Done(expected));
        }
        await ExpectTerminatedAsync(daemon, Wait);
    }

    [Fact]
    public async Task Without_a_service_every_action_succeeds_at_once()
    {
        var daemon = NewDaemon(withService: false);
        await SendAsync(daemon, DaemonInput.Mount);
        Assert.Equal(DaemonState.Running, (await SendAsync(daemon, DaemonInput.Start)).State);
    }

    /// <summary>Stands in for the FUSE session: hands each action to a probe, which answers the daemon directly.</summary>
    private sealed class ForwardingService : ReceiveActor
    {
        public ForwardingService(IActorRef probe) => ReceiveAny(m => probe.Forward(m));
    }
}
