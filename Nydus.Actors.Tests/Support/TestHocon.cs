using Akka.Configuration;

namespace Nydus.Actors.Tests.Support;

/// <summary>Actor system configuration for TestKit tests: the shipped nydusd.conf (serializers), with in-memory
/// persistence unless a test brings its own.</summary>
public static class TestHocon
{
    public static Akka.Configuration.Config InMemory() =>
        ConfigurationFactory.ParseString("""
            akka.loggers = ["Akka.TestKit.TestEventListener, Akka.TestKit"]
            akka.persistence.journal.plugin = "akka.persistence.journal.inmem"
            akka.persistence.snapshot-store.plugin = "akka.persistence.snapshot-store.inmem"
            """)
            .WithFallback(ConfigurationFactory.ParseString(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "hocon", "nydusd.conf"))))
            .WithFallback(ConfigurationFactory.ParseString(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "hocon", "dispatchers.conf"))));
}
