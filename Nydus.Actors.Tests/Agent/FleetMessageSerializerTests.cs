using System.Runtime.Serialization;
using System.Text;
using Akka.Actor;
using Nydus.Actors.Agent;
using Nydus.Actors.Agent.Fleet;
using Xunit;

namespace Nydus.Actors.Tests.Agent;

/// <summary>What crosses between agents of different versions and what older agents wrote: rollout messages
/// round-trip under their manifests, and records written before rollouts still read.</summary>
public sealed class FleetMessageSerializerTests : Akka.TestKit.Xunit2.TestKit
{
    private T RoundTrip<T>(JsonManifestSerializer serializer, T message) where T : notnull =>
        (T)serializer.FromBinary(serializer.ToBinary(message), serializer.Manifest(message));

    [Fact]
    public void Rollout_messages_round_trip_under_stable_manifests()
    {
        var serializer = new FleetMessageSerializer((ExtendedActorSystem)Sys);
        var target = new RolloutTarget("akka.tcp://nydus-fleet@10.0.0.2:4053", "d1", RolloutTargetStates.Done, 10, 20, 1, null);
        var status = new RolloutStatus("r-1", "/opt/nydusd", 2, 3, true, RolloutStates.Paused, "why", "akka.tcp://nydus-fleet@10.0.0.1:4053",
            1, 2, 1, [target]);
        var reply = RoundTrip(serializer, new RolloutReply(200, status));
        Assert.Equal(status with { Targets = [] }, reply.Rollout! with { Targets = [] });
        Assert.Equal(target, Assert.Single(reply.Rollout!.Targets));
        Assert.Equal(new StartRollout("/b", 1, 0, true, false), RoundTrip(serializer, new StartRollout("/b", 1, 0, true, false)));
        Assert.Equal(new UpgradeForRollout("r-1", "d1", "/b", 3000), RoundTrip(serializer, new UpgradeForRollout("r-1", "d1", "/b", 3000)));
        Assert.Equal(new RolloutStepResult("r-1", "d1", false, true, 1, 2, "e"), RoundTrip(serializer, new RolloutStepResult("r-1", "d1", false, true, 1, 2, "e")));
        Assert.Equal(new ControlRollout("pause"), RoundTrip(serializer, new ControlRollout("pause")));
        Assert.Equal("StartRollout.v1", serializer.Manifest(new StartRollout("/b", 1, 0, false, false)));
        Assert.Equal(GetRecordedRollout.Instance, RoundTrip(serializer, GetRecordedRollout.Instance));
        Assert.Equal(new RecordedRollout("{}"), RoundTrip(serializer, new RecordedRollout("{}")));
        Assert.Equal(new RecordedRollout(null), RoundTrip(serializer, new RecordedRollout(null)));
    }

    [Fact]
    public void A_message_of_a_newer_agent_fails_alone_naming_its_manifest()
    {
        var serializer = new FleetMessageSerializer((ExtendedActorSystem)Sys);
        var e = Assert.Throws<SerializationException>(() => serializer.FromBinary("{}"u8.ToArray(), "RolloutSomething.v9"));
        Assert.Contains("RolloutSomething.v9", e.Message);
    }

    [Fact]
    public void Records_written_before_rollouts_still_read()
    {
        // A fleet entry of an older agent: no capabilities (the coordinator reads that as "does not take rollouts").
        var report = FleetNodeReport.FromJson("""{"address":"a","agent_version":"0.9","roles":[],"published_at_ms":1,"daemons":[]}""");
        Assert.NotNull(report);
        Assert.Null(report.Capabilities);
        // An agent snapshot from before rollouts.
        var journal = new AgentJournalSerializer((ExtendedActorSystem)Sys);
        var snapshot = (AgentSnapshot)journal.FromBinary(Encoding.UTF8.GetBytes("""{"daemons":[]}"""), "AgentSnapshot.v1");
        Assert.Empty(snapshot.Daemons);
        Assert.Null(snapshot.RolloutsApplied);
        Assert.Null(snapshot.FleetRollout);
        var applied = new AgentRolloutApplied("r-1", "d1", 1, 2);
        Assert.Equal(applied, RoundTrip(journal, applied));
        var recorded = new AgentFleetRolloutRecorded("{\"id\":\"r-1\"}");
        Assert.Equal(recorded, RoundTrip(journal, recorded));
    }
}
