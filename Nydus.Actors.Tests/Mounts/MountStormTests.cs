using System.Collections.Concurrent;
using Nydus.Actors.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace Nydus.Actors.Tests.Mounts;

/// <summary>
/// 200 mount and umount requests from 8 concurrent clients against one real nydusd: the mount table that results is
/// exactly what the successful requests add up to, every refusal is the expected 409/404, and the daemon keeps no file
/// descriptors and no memory for the instances it let go.
/// </summary>
public sealed class MountStormTests(ITestOutputHelper output)
{
    private const int Clients = 8;
    private const int Requests = 200;
    private const int Mountpoints = 10;

    [FuseFact]
    public async Task Concurrent_mounts_and_umounts_end_in_the_table_the_successes_describe_without_leaks()
    {
        using var dir = new TempDir("storm");
        var images = new[] { SmallImage.Make(dir.Path, "s0", seed: 31, files: 6), SmallImage.Make(dir.Path, "s1", seed: 32, files: 6) };
        var config = SmallImage.Config(dir.Path);
        await using var daemon = await NydusdApiDaemon.StartAsync(dir, "storm-" + Guid.NewGuid().ToString("N")[..8]);
        string Mountpoint(int i) => $"/m{i}";

        // Warm up (JIT, pools, the journal's first writes) so the baseline is the steady state.
        for (int i = 0; i < Mountpoints; i++)
        {
            Assert.Equal(204, (await daemon.MountAsync(Mountpoint(i), images[i % 2].Image, config)).Status);
            images[i % 2].AssertServedAt(Path.Combine(daemon.MountPoint, $"m{i}"));
            Assert.Equal(204, (await daemon.UmountAsync(Mountpoint(i))).Status);
        }
        var fdsBefore = OpenDescriptors(daemon.Process.Pid);
        var rssBefore = ResidentBytes(daemon.Process.Pid);

        var mounted = new ConcurrentDictionary<string, int>();
        var unmounted = new ConcurrentDictionary<string, int>();
        var unexpected = new ConcurrentQueue<string>();
        int next = -1;
        int posts = 0;
        var clients = Enumerable.Range(0, Clients).Select(client => Task.Run(async () =>
        {
            using var api = new Nydus.Actors.Api.ApiClient(daemon.ApiSocket, TimeSpan.FromSeconds(60));
            var random = new Random(client);
            while (Interlocked.Increment(ref next) < Requests)
            {
                var mountpoint = Mountpoint(random.Next(Mountpoints));
                var query = "/api/v1/mount?mountpoint=" + Uri.EscapeDataString(mountpoint);
                if (random.Next(2) == 0)
                {
                    // A source of its own (a symlink per request): a POST at a used mountpoint is then a conflict
                    // (409), never the idempotent POST of the source already mounted there (204).
                    var source = Path.Combine(dir.Path, $"post-{Interlocked.Increment(ref posts)}.boot");
                    File.CreateSymbolicLink(source, images[random.Next(2)].Image);
                    var body = System.Text.Json.JsonSerializer.Serialize(new { source, fs_type = "rafs", config });
                    var (status, text) = await api.SendAsync("POST", query, body);
                    if (status == 204) mounted.AddOrUpdate(mountpoint, 1, (_, n) => n + 1);
                    else if (status != 409) unexpected.Enqueue($"POST {mountpoint}: {status} {text}");
                }
                else
                {
                    var (status, text) = await api.SendAsync("DELETE", query);
                    if (status == 204) unmounted.AddOrUpdate(mountpoint, 1, (_, n) => n + 1);
                    else if (status != 404) unexpected.Enqueue($"DELETE {mountpoint}: {status} {text}");
                }
            }
        })).ToArray();
        await Task.WhenAll(clients).WaitAsync(TimeSpan.FromMinutes(5));

        Assert.Empty(unexpected);
        var expected = new List<string>();
        for (int i = 0; i < Mountpoints; i++)
        {
            var mountpoint = Mountpoint(i);
            int balance = mounted.GetValueOrDefault(mountpoint) - unmounted.GetValueOrDefault(mountpoint);
            // Every success alternates: a mount succeeds only on a free mountpoint, an umount only on a used one.
            Assert.InRange(balance, 0, 1);
            if (balance == 1) expected.Add(mountpoint);
        }
        output.WriteLine($"{mounted.Values.Sum()} mounts and {unmounted.Values.Sum()} umounts succeeded; mounted at the end: {string.Join(' ', expected)}");
        Assert.True(mounted.Values.Sum() >= 20, "too few mounts succeeded for the storm to mean anything");
        Assert.Equal(expected.Order(StringComparer.Ordinal), await daemon.BackendMountpointsAsync());
        Assert.Equal(expected.Select(m => m[1..]).Order(StringComparer.Ordinal),
            Directory.EnumerateFileSystemEntries(daemon.MountPoint).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        foreach (var mountpoint in expected)
        {
            var served = Path.Combine(daemon.MountPoint, mountpoint[1..]);
            Assert.Contains(images, image => SmallImage.Listing(image.Source).SequenceEqual(SmallImage.Listing(served)));
        }

        // Let everything go: what the storm opened must be closed again.
        foreach (var mountpoint in expected) Assert.Equal(204, (await daemon.UmountAsync(mountpoint)).Status);
        var fdsAfter = OpenDescriptors(daemon.Process.Pid);
        var rssAfter = ResidentBytes(daemon.Process.Pid);
        output.WriteLine($"file descriptors {fdsBefore} -> {fdsAfter}; RSS {rssBefore >> 20} MiB -> {rssAfter >> 20} MiB");
        // A few descriptors come and go with the API's own connections; a leak per mount would be dozens.
        Assert.InRange(fdsAfter, 0, fdsBefore + 4);
        Assert.True(rssAfter < rssBefore + (128L << 20), $"RSS grew from {rssBefore >> 20} MiB to {rssAfter >> 20} MiB over the storm");
        Assert.False(daemon.Process.HasExited);
    }

    private static int OpenDescriptors(int pid) => Directory.GetFiles($"/proc/{pid}/fd").Length;

    private static long ResidentBytes(int pid)
    {
        foreach (var line in File.ReadLines($"/proc/{pid}/status"))
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) * 1024;
        throw new InvalidOperationException($"no VmRSS in /proc/{pid}/status");
    }
}
