using System.Security.Cryptography;
using System.Text.Json;
using System.Text.RegularExpressions;
using Nydus.Actors.Api;
using Nydus.Actors.Tests.Support;
using Xunit;

namespace Nydus.Actors.Tests.Host;

/// <summary>
/// The lean start and the quick exit, seen from outside with the real nydusd: the start-up breakdown it logs, and an
/// exit that ends the process right after its answer without losing a journal write or a log line.
/// </summary>
public sealed partial class StartupAndExitTests : IDisposable
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(60);
    private readonly TempDir _dir = new("startup-exit");

    [GeneratedRegex(@" ([a-z+-]+)=(\d+)ms/(\d+)cpu/(\d+)MiB")]
    private static partial Regex PhaseMark();

    [Fact]
    public async Task The_start_up_line_names_every_phase_with_time_cpu_and_memory()
    {
        var socket = _dir.Combine("api.sock");
        var log = _dir.Combine("nydusd.log");
        await using var daemon = NydusdProcess.Start("singleton", "--apisock", socket, "--id", "timeline",
            "--work-dir", _dir.Combine("work"), "--log-file", log);
        await daemon.WaitForStateAsync(socket, "RUNNING", Wait);
        using var client = new ApiClient(socket);
        Assert.Equal(204, (await client.SendAsync("PUT", "/api/v1/daemon/exit")).Status);
        Assert.Equal(0, await daemon.WaitForExitAsync(Wait));

        var line = File.ReadLines(log).Single(l => l.Contains("Start-up:", StringComparison.Ordinal));
        var marks = PhaseMark().Matches(line).ToDictionary(m => m.Groups[1].Value, m => (
            Wall: long.Parse(m.Groups[2].Value), Cpu: long.Parse(m.Groups[3].Value), Rss: long.Parse(m.Groups[4].Value)));
        foreach (var phase in new[] { "host", "logging", "hocon", "journal-files", "actor-system", "daemon-actor", "api", "journal-recovered", "running" })
            Assert.True(marks.ContainsKey(phase), $"phase {phase} missing from: {line}");
        // One clock: the main line's marks follow each other, and the process was resident and busy by then.
        Assert.True(marks["host"].Wall <= marks["journal-files"].Wall && marks["journal-files"].Wall <= marks["running"].Wall, line);
        Assert.True(marks["running"].Rss > 0 && marks["running"].Cpu > 0, line);
        Assert.Matches(@"jit=\d+ methods in \d+ ms", line);
    }

    [FuseFact]
    public async Task Exit_right_after_a_mount_change_ends_the_process_and_a_restart_finds_the_mount()
    {
        var mnt = Directory.CreateDirectory(_dir.Combine("mnt")).FullName;
        var socket = _dir.Combine("api.sock");
        string[] args = ["--apisock", socket, "--id", "quick-exit", "--mountpoint", mnt, "--work-dir", _dir.Combine("work")];
        var boot = ImageFixtures.UpstreamFile("bootstrap", "rafs-v6-2.2.boot");
        var config = JsonSerializer.Serialize(new
        {
            version = 2,
            backend = new { type = "localfs", localfs = new { dir = ImageFixtures.UpstreamFile("blobs") } },
            cache = new { type = "dummycache" },
            rafs = new { mode = "direct" },
        });
        var body = JsonSerializer.Serialize(new { source = boot, fs_type = "rafs", config });
        try
        {
            await using (var first = NydusdProcess.Start(args))
            {
                await first.WaitForStateAsync(socket, "RUNNING", Wait);
                using var client = new ApiClient(socket);
                var mounted = await client.SendAsync("POST", "/api/v1/mount?mountpoint=/a", body);
                Assert.True(mounted.Status == 204, mounted.Body);
                // No pause: the exit follows the mount's answer at once.
                Assert.Equal(204, (await client.SendAsync("PUT", "/api/v1/daemon/exit")).Status);
                Assert.Equal(0, await first.WaitForExitAsync(Wait));
                Assert.False(File.Exists(socket), "nydusd removes its own API socket on the way out");
                // The actor side's last lines reached the log before the process ended.
                Assert.Contains("READY -> STOPPED", first.Output);
                Assert.Contains("Daemon stopped", first.Output);
                Assert.Contains("nydusd exits", first.Output);
            }
            // exit leaves the kernel mount to a successor; without one, take it away before the next start (else it
            // would wait in INIT for a takeover).
            Assert.True(NydusdMount.IsListedInMounts(mnt));
            FuseTestMount.Detach(mnt);

            await using var second = NydusdProcess.Start(args);
            await second.WaitForStateAsync(socket, "RUNNING", Wait);
            using (var client = new ApiClient(socket))
            {
                var (_, info) = await client.SendAsync("GET", "/api/v1/daemon");
                Assert.True(JsonDocument.Parse(info).RootElement.GetProperty("backend_collection").TryGetProperty("/a", out _), info);
            }
            // Served as before: the fixture's file, byte for byte (MANIFEST md5).
            var bytes = await File.ReadAllBytesAsync(Path.Combine(mnt, "a", "lib.rs"));
            Assert.Equal("4709cf8873e419ecedc7d43fdee4a75f", Convert.ToHexStringLower(MD5.HashData(bytes)));
            second.Signal(NydusdProcess.SIGTERM);
            Assert.Equal(0, await second.WaitForExitAsync(Wait));
            Assert.False(NydusdMount.IsListedInMounts(mnt), "SIGTERM unmounts");
        }
        finally
        {
            if (NydusdMount.IsListedInMounts(mnt)) FuseTestMount.Detach(mnt);
        }
    }

    public void Dispose() => _dir.Dispose();
}
