using Akka.Actor;
using Akka.Configuration;

namespace Nydus.Actors.Agent.Fleet;

/// <summary>
/// The <c>nydus.agent.cluster</c> block: whether this agent is part of a fleet, the address it is reached at, the
/// seed nodes it joins through, its roles and the fleet state's timings. A block that is off (the default) or missing
/// yields null: the agent then runs exactly as a single host's agent and never loads Akka.Remote.
/// </summary>
public sealed record FleetSettings(
    string Hostname,
    int Port,
    IReadOnlyList<Address> SeedNodes,
    IReadOnlyList<string> Roles,
    TimeSpan PublishInterval,
    TimeSpan RestartDelay)
{
    /// <summary>Whether this agent takes rollout requests and may run the coordinator (<c>rollouts</c>, default on).
    /// Off, it behaves towards rollouts as an agent of a version before them: tests of mixed fleets use it.</summary>
    public bool Rollouts { get; init; } = true;

    /// <summary>The <c>rollout</c> block's timings.</summary>
    public RolloutSettings Rollout { get; init; } = new(TimeSpan.FromMinutes(5), TimeSpan.FromSeconds(2), TimeSpan.FromMinutes(2), TimeSpan.FromSeconds(5));

    /// <summary>The cluster's actor system name: every agent of a fleet must use the same one.</summary>
    public const string SystemName = "nydus-fleet";

    public const string ConfigPath = "nydus.agent.cluster";

    /// <summary>The cluster role of agents that take rollout requests (added when <see cref="Rollouts"/> is on): the
    /// coordinator singleton runs only on them.</summary>
    public const string RolloutRole = "rollouts";

    /// <summary>Akka.Remote's protocol: <c>akka.ssl.tcp</c> when the DotNetty transport has TLS on
    /// (<c>akka.remote.dot-netty.tcp.enable-ssl</c>), else <c>akka.tcp</c>. Addresses carry it, so a seed given as
    /// host:port must get the one the transport speaks, or joining fails with "no transport is loaded for protocol".</summary>
    public string Protocol { get; init; } = PlainProtocol;

    public const string PlainProtocol = "akka.tcp";
    public const string TlsProtocol = "akka.ssl.tcp";

    /// <summary>This agent's own address in the fleet.</summary>
    public Address SelfAddress => new(Protocol, SystemName, Hostname, Port);

    /// <summary>Reads the block; null when the cluster is not enabled. A bad value throws
    /// <see cref="ConfigurationException"/> naming the key.</summary>
    public static FleetSettings? From(Akka.Configuration.Config config)
    {
        if (!config.HasPath(ConfigPath) || !config.GetBoolean(ConfigPath + ".enabled", false)) return null;
        var block = config.GetConfig(ConfigPath);
        var hostname = block.GetString("hostname", "");
        if (string.IsNullOrWhiteSpace(hostname))
            throw new ConfigurationException($"{ConfigPath}.hostname is required when the cluster is enabled: the address other agents reach this one at");
        var port = block.GetInt("port", 4053);
        if (port is < 1 or > 65535) throw new ConfigurationException($"{ConfigPath}.port must be 1-65535, not {port}");
        var protocol = config.GetBoolean("akka.remote.dot-netty.tcp.enable-ssl", false) ? TlsProtocol : PlainProtocol;
        var seeds = block.GetStringList("seed-nodes", []).Select(seed => ParseSeed(seed, protocol)).ToList();
        if (seeds.Count == 0) throw new ConfigurationException($"{ConfigPath}.seed-nodes is empty: list at least one agent to join through (this one's own host:port founds the cluster)");
        var publish = block.GetTimeSpan("publish-interval", TimeSpan.FromSeconds(5));
        if (publish <= TimeSpan.Zero) throw new ConfigurationException($"{ConfigPath}.publish-interval must be positive");
        var restart = block.GetTimeSpan("restart-delay", TimeSpan.FromSeconds(5));
        var rollout = new RolloutSettings(
            Positive(block, "rollout.step-timeout", TimeSpan.FromMinutes(5)),
            block.GetTimeSpan("rollout.settle", TimeSpan.FromSeconds(2)),
            Positive(block, "rollout.gate-timeout", TimeSpan.FromMinutes(2)),
            Positive(block, "rollout.write-timeout", TimeSpan.FromSeconds(5)));
        return new FleetSettings(hostname, port, seeds, block.GetStringList("roles", []).ToList(), publish, restart)
        {
            Protocol = protocol,
            Rollouts = block.GetBoolean("rollouts", true),
            Rollout = rollout,
        };
    }

    private static TimeSpan Positive(Akka.Configuration.Config block, string key, TimeSpan fallback)
    {
        var value = block.GetTimeSpan(key, fallback);
        if (value <= TimeSpan.Zero) throw new ConfigurationException($"{ConfigPath}.{key} must be positive");
        return value;
    }

    /// <summary>"host:port" (given the transport's protocol), or a full akka.tcp/akka.ssl.tcp address of the fleet's system.</summary>
    private static Address ParseSeed(string seed, string protocol)
    {
        if (seed.Contains("://", StringComparison.Ordinal))
        {
            Address address;
            try
            {
                address = Address.Parse(seed);
            }
            catch (Exception e) when (e is UriFormatException or ArgumentException)
            {
                throw new ConfigurationException($"{ConfigPath}.seed-nodes: '{seed}' is not an address: {e.Message}");
            }
            if (address.System != SystemName)
                throw new ConfigurationException($"{ConfigPath}.seed-nodes: '{seed}' names system '{address.System}'; the fleet's is '{SystemName}'");
            // A seed of another protocol is never reached (e.g. akka.tcp with TLS on): say so now, not by join retries.
            if (address.Protocol != protocol)
                throw new ConfigurationException($"{ConfigPath}.seed-nodes: '{seed}' uses protocol {address.Protocol}; this agent's transport speaks {protocol} (TLS {(protocol == TlsProtocol ? "on" : "off")}): write it as {protocol}://... or as host:port");
            return address;
        }
        var colon = seed.LastIndexOf(':');
        if (colon <= 0 || !int.TryParse(seed[(colon + 1)..], out var port) || port is < 1 or > 65535)
            throw new ConfigurationException($"{ConfigPath}.seed-nodes: '{seed}' is not host:port");
        return new Address(protocol, SystemName, seed[..colon].Trim('[', ']'), port);
    }

    /// <summary>The seeds to join through. A first start uses the configured list as is (its first seed may found
    /// the cluster). A restart after this node was downed leaves itself out, so it can only rejoin the cluster the
    /// others kept, never found a second one while it is still cut off.</summary>
    public IReadOnlyList<Address> SeedsFor(bool restart)
    {
        if (!restart) return SeedNodes;
        var others = SeedNodes.Where(s => !s.Equals(SelfAddress)).ToList();
        return others.Count > 0 ? others : SeedNodes;
    }

    /// <summary>The settings of the fleet's actor system that come from this block (above cluster.conf).</summary>
    public Akka.Configuration.Config ToAkkaConfig()
    {
        static string Quote(string s) => "\"" + s.Replace("\\", "\\\\").Replace("\"", "\\\"") + "\"";
        return ConfigurationFactory.ParseString($"""
            akka.remote.dot-netty.tcp.hostname = {Quote(Hostname)}
            akka.remote.dot-netty.tcp.port = {Port}
            akka.cluster.roles = [{string.Join(", ", (Rollouts ? Roles.Append(RolloutRole) : Roles).Select(Quote))}]
            """);
    }
}
