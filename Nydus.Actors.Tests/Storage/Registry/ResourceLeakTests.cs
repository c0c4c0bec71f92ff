using System.Diagnostics;
using Nydus.Actors.Storage;
using Nydus.Actors.Storage.Backends;
using Nydus.Actors.Tests.Support;
using Xunit;

namespace Nydus.Actors.Tests.Storage.Registry;

/// <summary>Counts the whole process's descriptors and threads, so it runs alone: tests of other classes running
/// beside it (mounts, registries) would open descriptors of their own and blur the count.</summary>
[CollectionDefinition(nameof(ResourceLeakTests), DisableParallelization = true)]
public sealed class ResourceLeakCollection;

[Collection(nameof(ResourceLeakTests))]
public sealed class ResourceLeakTests
{
    private static RegistryBackendSettings Settings(string host) => RegistryBackendTests.Settings(host);

    [Fact]
    public void Thousand_failed_requests_leak_no_sockets_or_threads()
    {
        int port = RegistryServer.FreePort(); // nothing listens there: connection refused
        using var backend = new RegistryBackend(Settings($"127.0.0.1:{port}") with { Timeout = TimeSpan.FromSeconds(2) });
        var part = new byte[16];
        string id = new('b', 64);
        // Warm up so lazily created runtime handles (epoll, timers) are counted in "before".
        for (int i = 0; i < 20; i++)
        {
            Assert.Throws<StorageException>(() => backend.Read(id, 0, part));
        }

        int fdsBefore = Directory.GetFiles("/proc/self/fd").Length;
        int threadsBefore = Process.GetCurrentProcess().Threads.Count;
        for (int i = 0; i < 1000; i++)
        {
            StorageException e = Assert.Throws<StorageException>(() => backend.Read(id, 0, part));
            Assert.Equal(StorageErrorKind.BackendUnavailable, e.Kind);
        }

        int fdsAfter = Directory.GetFiles("/proc/self/fd").Length;
        int threadsAfter = Process.GetCurrentProcess().Threads.Count;
        // Runtime housekeeping may open a few descriptors or threads meanwhile: allow a little, not 1000.
        Assert.True(fdsAfter - fdsBefore < 30, $"fds {fdsBefore} -> {fdsAfter}");
        Assert.True(threadsAfter - threadsBefore < 30, $"threads {threadsBefore} -> {threadsAfter}");
        Assert.Equal(1020, backend.Metrics.ReadErrors);
    }
}
