using Nydus.Actors.Daemon;
using Xunit;

namespace Nydus.Actors.Tests.Daemon;

public class DaemonStateMachineTests
{
    // Upstream's table (service/src/daemon.rs): everything else is an unexpected event.
    public static TheoryData<DaemonFsmState, DaemonInput, DaemonFsmState?, DaemonAction> Table()
    {
        var listed = new Dictionary<(DaemonFsmState, DaemonInput), (DaemonFsmState, DaemonAction)>
        {
            [(DaemonFsmState.Init, DaemonInput.Mount)] = (DaemonFsmState.Ready, DaemonAction.None),
            [(DaemonFsmState.Init, DaemonInput.Takeover)] = (DaemonFsmState.Ready, DaemonAction.Restore),
            [(DaemonFsmState.Init, DaemonInput.Stop)] = (DaemonFsmState.Die, DaemonAction.StopStateMachine),
            [(DaemonFsmState.Ready, DaemonInput.Start)] = (DaemonFsmState.Running, DaemonAction.StartService),
            [(DaemonFsmState.Ready, DaemonInput.Stop)] = (DaemonFsmState.Die, DaemonAction.Umount),
            [(DaemonFsmState.Ready, DaemonInput.Exit)] = (DaemonFsmState.Die, DaemonAction.StopStateMachine),
            [(DaemonFsmState.Running, DaemonInput.Stop)] = (DaemonFsmState.Ready, DaemonAction.TerminateService),
        };
        var data = new TheoryData<DaemonFsmState, DaemonInput, DaemonFsmState?, DaemonAction>();
        foreach (var state in Enum.GetValues<DaemonFsmState>())
        foreach (var input in Enum.GetValues<DaemonInput>())
        {
            if (listed.TryGetValue((state, input), out var t)) data.Add(state, input, t.Item1, t.Item2);
            else data.Add(state, input, null, DaemonAction.None);
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Table))]
    public void Transition_matches_upstream_table(DaemonFsmState from, DaemonInput input, DaemonFsmState? expectedTo, DaemonAction expectedAction)
    {
        var accepted = DaemonStateMachine.TryTransition(from, input, out var to, out var action);
        Assert.Equal(expectedTo is not null, accepted);
        Assert.Equal(expectedTo ?? from, to);
        Assert.Equal(expectedAction, action);
    }

    [Theory]
    [InlineData(DaemonState.Running, new[] { DaemonInput.Stop, DaemonInput.Stop })]
    [InlineData(DaemonState.Ready, new[] { DaemonInput.Stop })]
    [InlineData(DaemonState.Init, new[] { DaemonInput.Stop })]
    [InlineData(DaemonState.Stopped, new DaemonInput[0])]
    public void Stop_sequence_unmounts_from_every_state(DaemonState reported, DaemonInput[] expected) =>
        Assert.Equal(expected, DaemonStateMachine.StopSequence(reported));

    [Theory]
    [InlineData(DaemonState.Running, new[] { DaemonInput.Stop, DaemonInput.Exit })]
    [InlineData(DaemonState.Ready, new[] { DaemonInput.Exit })]
    [InlineData(DaemonState.Init, new[] { DaemonInput.Stop })]
    [InlineData(DaemonState.Stopped, new DaemonInput[0])]
    public void Exit_sequence_never_unmounts(DaemonState reported, DaemonInput[] expected)
    {
        Assert.Equal(expected, DaemonStateMachine.ExitSequence(reported));
        // Walk it: no step may run the Umount action.
        var fsm = reported switch
        {
            DaemonState.Running => DaemonFsmState.Running,
            DaemonState.Ready => DaemonFsmState.Ready,
            DaemonState.Init => DaemonFsmState.Init,
            _ => DaemonFsmState.Die,
        };
        foreach (var input in expected)
        {
            Assert.True(DaemonStateMachine.TryTransition(fsm, input, out fsm, out var action));
            Assert.NotEqual(DaemonAction.Umount, action);
        }
    }

    [Fact]
    public void State_names_and_numbers_are_upstreams()
    {
        Assert.Equal(1, (int)DaemonState.Init);
        Assert.Equal(2, (int)DaemonState.Running);
        Assert.Equal(3, (int)DaemonState.Ready);
        Assert.Equal(4, (int)DaemonState.Stopped);
        Assert.Equal(5, (int)DaemonState.Unknown);
        Assert.Equal("RUNNING", DaemonState.Running.ToApiName());
        Assert.Equal("READY", DaemonState.Ready.ToApiName());
    }
}
