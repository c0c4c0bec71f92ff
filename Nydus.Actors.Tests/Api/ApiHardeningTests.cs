using System.Diagnostics;
using System.Text;
using System.Text.Json;
using Nydus.Actors.Api;
using Nydus.Actors.Tests.Mounts;
using Nydus.Actors.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace Nydus.Actors.Tests.Api;

/// <summary>
/// Issue 16 against a real nydusd: each bad input of the outside check gets a quick, short, clear answer, nothing is
/// mounted or logged that should not be, and the daemon keeps serving what it served.
/// </summary>
public sealed class ApiHardeningTests(ITestOutputHelper output)
{
    private static string NewId(string prefix) => prefix + "-" + Guid.NewGuid().ToString("N")[..8];

    private static string Body(string source, string config, string fsType = "rafs") =>
        JsonSerializer.Serialize(new Dictionary<string, object> { ["source"] = source, ["fs_type"] = fsType, ["config"] = config });

    /// <summary>A config whose localfs backend reads every blob from one file (upstream's <c>blob_file</c>).</summary>
    private static string BlobFileConfig(string blobFile) =>
        "{\"version\":2,\"backend\":{\"type\":\"localfs\",\"localfs\":{\"blob_file\":" + NydusdMount.Json(blobFile)
        + "}},\"cache\":{\"type\":\"dummycache\"},\"rafs\":{\"mode\":\"direct\"}}";

    /// <summary>A chunk-based EROFS image whose data lives in a separate blob file (mkfs.erofs --blobdev).</summary>
    private static (string Image, string Blob) BlobImage(TempDir dir, SmallImage source)
    {
        var image = dir.Combine("chunked.img");
        var blob = dir.Combine("chunked.blob");
        TreeBuilder.Run("mkfs.erofs", "--quiet", "--chunksize=4096", "--blobdev=" + blob, image, source.Source);
        return (image, blob);
    }

    private async Task ExpectAsync(int status, string code, string mention, Task<(int Status, string Body)> request)
    {
        var (got, body) = await request;
        output.WriteLine($"{got} {(body.Length > 300 ? body[..300] + "..." : body)}");
        Assert.Equal(status, got);
        using var error = JsonDocument.Parse(body);
        Assert.Equal(code, error.RootElement.GetProperty("code").GetString());
        Assert.Contains(mention, error.RootElement.GetProperty("message").GetString(), StringComparison.OrdinalIgnoreCase);
    }

    /// <summary>Before: a FIFO source blocked the mount queue until written to (and a mount asked meanwhile was carried
    /// out once it was, after its client had given up); /dev/zero was read whole into memory.</summary>
    [FuseFact]
    public async Task A_fifo_or_device_source_is_refused_at_once_and_the_queue_keeps_moving()
    {
        using var dir = new TempDir("hfifo");
        var a = SmallImage.Make(dir.Path, "a", seed: 61, files: 4);
        var b = SmallImage.Make(dir.Path, "b", seed: 62, files: 4);
        var config = SmallImage.Config(dir.Path);
        var fifo = dir.Combine("fifo");
        Assert.Equal(0, Mono_mkfifo(fifo));
        await using var daemon = await NydusdApiDaemon.StartAsync(dir, NewId("hfifo"));
        Assert.Equal(204, (await daemon.MountAsync("/a", a.Image, config)).Status);

        // A short client timeout: before the fix the FIFO request never answered.
        using var quick = new ApiClient(daemon.ApiSocket, TimeSpan.FromSeconds(20));
        await ExpectAsync(400, "BadRequest", "FIFO", quick.SendAsync("POST", "/api/v1/mount?mountpoint=/f", Body(fifo, config)));
        await ExpectAsync(400, "BadRequest", "character device", quick.SendAsync("POST", "/api/v1/mount?mountpoint=/z", Body("/dev/zero", config)));
        await ExpectAsync(400, "BadRequest", "directory", quick.SendAsync("POST", "/api/v1/mount?mountpoint=/d", Body(dir.Path, config)));
        // A blob file that is a FIFO would block a FUSE worker at its first read.
        var (chunked, _) = BlobImage(dir, b);
        await ExpectAsync(400, "BadRequest", "FIFO", quick.SendAsync("POST", "/api/v1/mount?mountpoint=/fb", Body(chunked, BlobFileConfig(fifo))));

        Assert.Equal(204, (await quick.SendAsync("POST", "/api/v1/mount?mountpoint=/b", Body(b.Image, config))).Status);
        Assert.Equal(["/a", "/b"], await daemon.BackendMountpointsAsync());
        a.AssertServedAt(Path.Combine(daemon.MountPoint, "a"));
        b.AssertServedAt(Path.Combine(daemon.MountPoint, "b"));
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "mkfifo", SetLastError = true)]
    private static extern int Mono_mkfifo(string path, uint mode = 0b110_000_000);

    /// <summary>Before: 300 KB of '[' as the config gave a 13 MB error body and 13 MB of log.</summary>
    [FuseFact]
    public async Task A_deeply_nested_config_gets_a_short_error_and_a_short_log()
    {
        using var dir = new TempDir("hdeep");
        var a = SmallImage.Make(dir.Path, "a", seed: 63, files: 4);
        await using var daemon = await NydusdApiDaemon.StartAsync(dir, NewId("hdeep"));
        int logBefore = daemon.Process.Output.Length;
        foreach (var config in new[] { new string('[', 300_000), new string('{', 300_000), "[" + new string('[', 100) + "x" })
        {
            var (status, body) = await daemon.MountAsync("/a", a.Image, config);
            output.WriteLine($"{status} {body.Length} bytes: {body[..Math.Min(200, body.Length)]}");
            Assert.Equal(400, status);
            Assert.True(body.Length < 4096, $"the error body is {body.Length} bytes");
        }
        // Over the size a configuration may have at all.
        var (bigStatus, bigBody) = await daemon.MountAsync("/a", a.Image, "{\"version\":2,\"x\":\"" + new string('y', 2 << 20) + "\"}");
        Assert.Equal(400, bigStatus);
        Assert.Contains("more than", bigBody);
        await Task.Delay(500); // the daemon's last log lines reach the pipe
        int logged = daemon.Process.Output.Length - logBefore;
        output.WriteLine($"log grew by {logged} characters");
        Assert.True(logged < 32 << 10, $"four bad configs logged {logged} characters");
        Assert.Empty(await daemon.BackendMountpointsAsync());
    }

    /// <summary>Before: a mountpoint with a newline forged a log line, and a 6,000-byte one was accepted.</summary>
    [FuseFact]
    public async Task Mountpoints_and_sources_over_path_max_or_with_control_characters_are_refused()
    {
        using var dir = new TempDir("hpath");
        var a = SmallImage.Make(dir.Path, "a", seed: 64, files: 4);
        var config = SmallImage.Config(dir.Path);
        await using var daemon = await NydusdApiDaemon.StartAsync(dir, NewId("hpath"));
        const string forged = "[00:00:00.000 INF] FORGED line";
        await ExpectAsync(400, "BadRequest", "control character", daemon.MountAsync("/x\n" + forged, a.Image, config));
        await ExpectAsync(400, "BadRequest", "control character", daemon.UmountAsync("/x\r\n" + forged));
        await ExpectAsync(400, "BadRequest", "PATH_MAX", daemon.MountAsync("/" + string.Join("/", Enumerable.Repeat(new string('m', 200), 30)), a.Image, config));
        await ExpectAsync(400, "BadRequest", "control character", daemon.MountAsync("/s", a.Image + "\n" + forged, config));
        await ExpectAsync(400, "BadRequest", "PATH_MAX", daemon.MountAsync("/s", "/" + new string('s', 6000), config));
        // Input quoted in a log line other than through the checks above (an unknown route) is escaped too.
        await daemon.Api.SendAsync("GET", "/api/v1/nothing%0A" + Uri.EscapeDataString(forged));
        await Task.Delay(500);
        Assert.DoesNotContain("\n" + forged, daemon.Process.Output);
        Assert.Empty(await daemon.BackendMountpointsAsync());
    }

    /// <summary>Before: PUT /api/v1/daemon took a 30 MB body while the mount API stopped at 4 MB; a missing blob file
    /// answered 500.</summary>
    [FuseFact]
    public async Task One_body_limit_for_the_whole_api_and_a_missing_blob_file_is_a_bad_request()
    {
        using var dir = new TempDir("hbody");
        var a = SmallImage.Make(dir.Path, "a", seed: 65, files: 4);
        await using var daemon = await NydusdApiDaemon.StartAsync(dir, NewId("hbody"));
        // The answer comes from the headers alone: the daemon neither reads nor waits for a body over the limit.
        await ExpectAsync(413, "PayloadTooLarge", "", HeadersOnlyAsync(daemon.ApiSocket, "PUT", "/api/v1/daemon", 6 << 20));
        await ExpectAsync(413, "PayloadTooLarge", "", HeadersOnlyAsync(daemon.ApiSocket, "POST", "/api/v1/mount?mountpoint=/a", 30 << 20));
        await ExpectAsync(400, "BadRequest", "", daemon.Api.SendAsync("PUT", "/api/v1/daemon", new string('[', 10_000)));
        Assert.Equal(204, (await daemon.Api.SendAsync("PUT", "/api/v1/daemon", "{\"log_level\":\"info\"}")).Status);

        var (chunked, blob) = BlobImage(dir, a);
        await ExpectAsync(400, "BadRequest", "no-such-blob", daemon.MountAsync("/a", chunked, BlobFileConfig(dir.Combine("no-such-blob"))));
        await ExpectAsync(400, "BadRequest", "no-such-dir", daemon.MountAsync("/a", chunked, SmallImage.Config(dir.Combine("no-such-dir"))));
        Assert.Equal(204, (await daemon.MountAsync("/a", chunked, BlobFileConfig(blob))).Status);
        a.AssertServedAt(Path.Combine(daemon.MountPoint, "a"));
    }

    /// <summary>Sends only the request line and headers, announcing a body of <paramref name="contentLength"/> bytes,
    /// and returns the answer the daemon gives without it (status and body).</summary>
    private static async Task<(int Status, string Body)> HeadersOnlyAsync(string socketPath, string method, string path, long contentLength)
    {
        using var socket = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Unspecified);
        using var limit = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        await socket.ConnectAsync(new System.Net.Sockets.UnixDomainSocketEndPoint(socketPath), limit.Token);
        await socket.SendAsync(Encoding.ASCII.GetBytes($"{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {contentLength}\r\n\r\n"),
            System.Net.Sockets.SocketFlags.None, limit.Token);
        var answer = new MemoryStream();
        var buffer = new byte[4096];
        int n;
        while ((n = await socket.ReceiveAsync(buffer, System.Net.Sockets.SocketFlags.None, limit.Token)) > 0)
        {
            answer.Write(buffer, 0, n);
            var text = Encoding.UTF8.GetString(answer.ToArray());
            int headerEnd = text.IndexOf("\r\n\r\n", StringComparison.Ordinal);
            if (headerEnd < 0) continue;
            var headers = text[..headerEnd].Split("\r\n");
            var rest = text[(headerEnd + 4)..];
            int status = int.Parse(headers[0].Split(' ')[1]);
            if (headers.Any(h => h.Equals("Transfer-Encoding: chunked", StringComparison.OrdinalIgnoreCase)))
            {
                if (!rest.EndsWith("0\r\n\r\n", StringComparison.Ordinal)) continue;
                var body = new StringBuilder();
                for (int at = 0; ;)
                {
                    int lineEnd = rest.IndexOf("\r\n", at, StringComparison.Ordinal);
                    int size = Convert.ToInt32(rest[at..lineEnd], 16);
                    if (size == 0) return (status, body.ToString());
                    body.Append(rest, lineEnd + 2, size); // ASCII JSON: characters are bytes
                    at = lineEnd + 2 + size + 2;
                }
            }
            var lengthLine = headers.FirstOrDefault(l => l.StartsWith("Content-Length:", StringComparison.OrdinalIgnoreCase));
            int bodyLength = lengthLine is null ? 0 : int.Parse(lengthLine.Split(':')[1].Trim());
            if (Encoding.UTF8.GetByteCount(rest) >= bodyLength) return (status, rest);
        }
        throw new IOException("the daemon closed the connection without an answer");
    }

    /// <summary>Before: POST ?mountpoint=/ on a daemon with mounts succeeded and hid them; under a root image, a mount
    /// at /d hid the image's own d/.</summary>
    [FuseFact]
    public async Task The_mount_table_never_hides_a_mount_or_a_name_of_the_root_image()
    {
        using var dir = new TempDir("hhide");
        var a = SmallImage.Make(dir.Path, "a", seed: 66, files: 6); // has d1/ and d2/ at its top
        var b = SmallImage.Make(dir.Path, "b", seed: 67, files: 4);
        var config = SmallImage.Config(dir.Path);

        await using (var empty = await NydusdApiDaemon.StartAsync(dir, NewId("hhide")))
        {
            Assert.Equal(204, (await empty.MountAsync("/b", b.Image, config)).Status);
            await ExpectAsync(409, "AlreadyExists", "/b", empty.MountAsync("/", a.Image, config));
            Assert.Equal(["/b"], await empty.BackendMountpointsAsync());
            b.AssertServedAt(Path.Combine(empty.MountPoint, "b"));
        }

        using var dir2 = new TempDir("hhide2");
        await using var rooted = await NydusdApiDaemon.StartAsync(dir2, NewId("hhide"), 0,
            "--bootstrap", a.Image, "--config", WriteConfig(dir2, config));
        await ExpectAsync(409, "AlreadyExists", "d1", rooted.MountAsync("/d1", b.Image, config));
        await ExpectAsync(409, "AlreadyExists", "d2", rooted.MountAsync("/d2/x", b.Image, config));
        Assert.Equal(204, (await rooted.MountAsync("/extra/b", b.Image, config)).Status);
        // The root image as it was, plus the new mount beside it.
        Assert.Equal(SmallImage.Listing(a.Source), SmallImage.Listing(rooted.MountPoint).Where(p => p != "extra" && !p.StartsWith("extra/", StringComparison.Ordinal)));
        b.AssertServedAt(Path.Combine(rooted.MountPoint, "extra", "b"));
        Assert.True(File.ReadAllBytes(Directory.EnumerateFiles(Path.Combine(rooted.MountPoint, "d1")).First()).Length > 0);
    }

    private static string WriteConfig(TempDir dir, string config)
    {
        var path = dir.Combine("root.json");
        File.WriteAllText(path, config);
        return path;
    }

    /// <summary>Before: a regular file at the --apisock path was deleted without a word.</summary>
    [FuseFact]
    public async Task A_regular_file_at_the_socket_path_is_refused_and_kept()
    {
        using var dir = new TempDir("hsock");
        var socket = dir.Combine("api.sock");
        File.WriteAllText(socket, "not a socket");
        var mountPoint = dir.Combine("mnt");
        Directory.CreateDirectory(mountPoint);
        try
        {
            var (code, text) = await NydusdProcess.RunAsync(TimeSpan.FromSeconds(60),
                "--apisock", socket, "--work-dir", dir.Combine("work"), "-M", mountPoint);
            output.WriteLine(text);
            Assert.NotEqual(0, code);
            Assert.Contains("not a socket", text);
            Assert.Equal("not a socket", File.ReadAllText(socket));
            Assert.False(NydusdMount.IsListedInMounts(mountPoint));
        }
        finally
        {
            NydusdMount.DetachIfMounted(mountPoint);
        }
    }

    /// <summary>The socket appears at its path already 0600, and nothing of the private directory it was bound in is
    /// left beside it.</summary>
    [FuseFact]
    public async Task The_socket_appears_restricted_and_leaves_nothing_beside_it()
    {
        using var dir = new TempDir("hsock2");
        var sockets = dir.Combine("sockets");
        Directory.CreateDirectory(sockets);
        var socket = Path.Combine(sockets, "api.sock");
        var mountPoint = dir.Combine("mnt");
        Directory.CreateDirectory(mountPoint);
        // Started under umask 000: before the fix the socket was bound 0777 and narrowed only after the server started.
        var info = new ProcessStartInfo("/bin/sh") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var arg in new[] { "-c", "umask 000; exec \"$0\" \"$@\"", NydusdProcess.BinaryPath, "--apisock", socket, "--work-dir", dir.Combine("work"), "-M", mountPoint })
            info.ArgumentList.Add(arg);
        using var process = Process.Start(info)!;
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        try
        {
            var seen = new List<UnixFileMode>();
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
            while (!ApiSocket.IsLive(socket) && DateTime.UtcNow < deadline && !process.HasExited)
            {
                if (File.Exists(socket)) seen.Add(File.GetUnixFileMode(socket));
                Thread.SpinWait(1000);
            }
            Assert.True(ApiSocket.IsLive(socket), "the daemon did not listen");
            seen.Add(File.GetUnixFileMode(socket));
            output.WriteLine($"modes seen: {string.Join(", ", seen.Distinct())}");
            Assert.All(seen, mode => Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, mode));
            Assert.Equal(["api.sock"], Directory.EnumerateFileSystemEntries(sockets).Select(Path.GetFileName));
        }
        finally
        {
            if (!process.HasExited)
            {
                process.Kill();
                await process.WaitForExitAsync(new CancellationTokenSource(TimeSpan.FromSeconds(30)).Token);
            }
            NydusdMount.DetachIfMounted(mountPoint);
        }
    }

    /// <summary>Before: a daemon started from a script (SIGINT inherited ignored) ignored SIGINT.</summary>
    [FuseFact]
    public async Task A_daemon_started_with_sigint_ignored_still_stops_on_sigint()
    {
        using var dir = new TempDir("hsig");
        var socket = dir.Combine("api.sock");
        var mountPoint = dir.Combine("mnt");
        Directory.CreateDirectory(mountPoint);
        var info = new ProcessStartInfo("/bin/bash") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var arg in new[] { "-c", "trap '' INT QUIT; exec \"$0\" \"$@\"", NydusdProcess.BinaryPath, "--apisock", socket, "--work-dir", dir.Combine("work"), "-M", mountPoint })
            info.ArgumentList.Add(arg);
        using var process = Process.Start(info)!;
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        try
        {
            await ApiClient.WaitForStateAsync(socket, "RUNNING", TimeSpan.FromSeconds(60), () => process.HasExited ? "nydusd exited" : null);
            var ignored = File.ReadLines($"/proc/{process.Id}/status").First(l => l.StartsWith("SigIgn:", StringComparison.Ordinal));
            output.WriteLine(ignored);
            Assert.Equal(0, Kill(process.Id, 2));
            using var exit = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            await process.WaitForExitAsync(exit.Token);
            Assert.Equal(0, process.ExitCode);
            Assert.False(NydusdMount.IsListedInMounts(mountPoint), "SIGINT's shutdown left the mount behind");
        }
        finally
        {
            if (!process.HasExited)
            {
                process.Kill();
                await process.WaitForExitAsync(new CancellationTokenSource(TimeSpan.FromSeconds(30)).Token);
            }
            NydusdMount.DetachIfMounted(mountPoint);
        }
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int Kill(int pid, int signal);
}
