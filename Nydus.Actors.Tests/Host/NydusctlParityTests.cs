using System.Diagnostics;
using System.Text.Json;
using Nydus.Actors.Tests.Mounts;
using Nydus.Actors.Tests.Support;
using Nydus.Host;
using Xunit;

namespace Nydus.Actors.Tests.Host;

/// <summary>
/// `nydusd ctl` against upstream nydusctl (dragonflyoss/nydus src/bin/nydusctl/commands.rs). The expected outputs are
/// nydusctl's own print! templates, copied verbatim from that file, filled with values worked out by hand from the
/// input JSON (serde_json Display: strings quoted; Rust f64 Display: "2", "0.25"). Then the real binary against a
/// real daemon with a mounted image, for every verb.
/// </summary>
public sealed class NydusctlParityTests
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(60);

    private static JsonElement Json(string text) => JsonDocument.Parse(text).RootElement;

    /// <summary>Fills "{name}" placeholders as Rust's format! does for named arguments.</summary>
    private static string Fill(string template, params (string Name, string Value)[] values)
    {
        foreach (var (name, value) in values) template = template.Replace("{" + name + "}", value);
        return template;
    }

    // CommandDaemon::execute, the print! template.
    private const string InfoTemplate = """

        Version:                {version}
        Status:                 {state}
        Profile:                {profile}
        Commit:                 {git_commit}

        """;

    // CommandCache::execute, the print! template.
    private const string CacheTemplate = """

        Partial Hits:               {partial_hits}
        Whole Hits:                 {whole_hits}
        Total Read:                 {total_read}
        Directory:                  {directory}
        Files:                      {files}
        Persister Buffer:           {buffered}

        Prefetch Workers:           {workers}
        Prefetch Amount:            {prefetch_amount} = {prefetch_amount_kb} KB
        Prefetch Requests:          {requests}
        Prefetch Average Size:      {avg_prefetch_size} Bytes
        Prefetch Duration:          {prefetch_duration} Seconds
        Prefetch Bandwidth:         {prefetch_bandwidth} MB/S
        Prefetch Request Latency:   {prefetch_request_latency} Seconds
        Prefetch Unmerged:          {unmerged_blocks}

        """;

    [Fact]
    public void Info_prints_nydusctls_block_and_each_instance()
    {
        var body = Json("""
            {"version":{"package_ver":"v2.2.0","git_commit":"0123abcd","build_time":"2024-01-01T00:00:00Z","profile":"release","rustc":"r"},
             "id":"d1","supervisor":null,"state":"RUNNING",
             "backend_collection":{
               "/a":{"backend_type":"rafs","mountpoint":"/a","mounted_time":"2024-05-01 08:09:10.123456789 +00:00:00",
                     "config":{"version":2,"backend":{"type":"localfs"},"cache":{"type":"blobcache","prefetch":{"enable":true,"batch_size":1048576}},"rafs":{"mode":"direct"}}},
               "/p":{"backend_type":"passthrough_fs","mountpoint":"/p","mounted_time":"2024-05-01 08:09:11.000000000 +00:00:00","config":null}}}
            """);
        var expected = Fill(InfoTemplate, ("version", "\"v2.2.0\""), ("state", "\"RUNNING\""), ("profile", "\"release\""), ("git_commit", "\"0123abcd\""))
                       + "Instances:\n"
                       + "\tInstance Mountpoint:  /a\n\tType:  Rafs\n\tMounted Time:  2024-05-01 08:09:10.123456789 +00:00:00\n"
                       + "\tMode:  direct\n\tPrefetch:  true\n\tPrefetch Merging Size:  1048576\n\n"
                       + "\tInstance Mountpoint:  /p\n\tType:  PassthroughFs\n\tMounted Time:  2024-05-01 08:09:11.000000000 +00:00:00\n";
        Assert.Equal(expected, NydusctlFormat.Info(body));

        // No instances: no "Instances:" line (nydusctl prints it only for a non-empty collection).
        var bare = Json("""{"version":{"package_ver":"1","git_commit":"c","profile":"debug"},"state":"INIT","backend_collection":{}}""");
        Assert.Equal(Fill(InfoTemplate, ("version", "\"1\""), ("state", "\"INIT\""), ("profile", "\"debug\""), ("git_commit", "\"c\"")),
            NydusctlFormat.Info(bare));
    }

    [Fact]
    public void Metrics_cache_computes_nydusctls_derived_figures()
    {
        var body = Json("""
            {"partial_hits":0,"whole_hits":5,"total":7,"store_path":"/var/cache","prefetch_data_amount":2097152,
             "prefetch_requests_count":2,"prefetch_cumulative_time_millis":500,"prefetch_begin_time_secs":100,
             "prefetch_begin_time_millis":0,"prefetch_end_time_secs":101,"prefetch_end_time_millis":0,"prefetch_unmerged_chunks":9}
            """);
        var expected = Fill(CacheTemplate, ("partial_hits", "0"), ("whole_hits", "5"), ("total_read", "7"), ("directory", "\"/var/cache\""),
            // Fields this build does not report print as serde_json's null, as nydusctl would.
            ("files", "null"), ("buffered", "null"), ("workers", "null"),
            ("prefetch_amount", "2097152"), ("prefetch_amount_kb", "2048"), ("requests", "2"), ("avg_prefetch_size", "1048576"),
            // 101 s - 100 s; 2 MiB / 1 s; 500 ms / 2 requests.
            ("prefetch_duration", "1"), ("prefetch_bandwidth", "2"), ("prefetch_request_latency", "0.25"), ("unmerged_blocks", "9"));
        Assert.Equal(expected, NydusctlFormat.Cache(body));

        // Before any prefetch (all zeros, as the API reports them): Rust's 0/0 is NaN.
        var idle = Json("""
            {"partial_hits":0,"whole_hits":0,"total":0,"store_path":"/c","prefetch_data_amount":0,"prefetch_requests_count":0,
             "prefetch_cumulative_time_millis":0,"prefetch_begin_time_secs":0,"prefetch_begin_time_millis":0,
             "prefetch_end_time_secs":0,"prefetch_end_time_millis":0}
            """);
        Assert.Contains("Prefetch Bandwidth:         NaN MB/S\n", NydusctlFormat.Cache(idle));
        Assert.Contains("Prefetch Average Size:      0 Bytes\n", NydusctlFormat.Cache(idle));
    }

    [Fact]
    public void Metrics_backend_prints_both_tables_as_nydusctl()
    {
        var body = Json("""
            {"backend_type":"registry","read_count":10,"read_errors":1,"read_amount_total":2097152,
             "read_cumulative_latency_millis_total":50,"read_cumulative_latency_millis_dist":[0,0,30,0,0,0,0,20],
             "read_count_block_size_dist":[0,0,3,0,0,0,0,2]}
            """);
        // print!(r#"\nBackend Type: ..."#), then println!(r#"\n{:<25}{:<8}..."#), print!("{:<25}") + "{:<8}" each, println!().
        var expected =
            "\nBackend Type:       \"registry\"\nRead Amount:        2097152 Bytes (2 MB)\nRead Count:         10\nRead Errors:        1\n"
            + "\n" + "Block Sizes:".PadRight(25) + "<1K     1K~     4K~     16K~    64K~    128K~   512K~   1M~     " + "\n"
            + "Average Latency(millis):".PadRight(25) + "0       0       10      0       0       0       0       10      " + "\n"
            + "\n" + "Block Sizes:".PadRight(25) + "<1K     1K~     4K~     16K~    64K~    128K~   512K~   1M~     " + "\n"
            + "Request Count:".PadRight(25) + "0       0       3       0       0       0       0       2       " + "\n";
        Assert.Equal(expected, NydusctlFormat.Backend(body));

        // -I: the change over the interval.
        var later = Json("""
            {"backend_type":"registry","read_count":14,"read_errors":1,"read_amount_total":6291456,
             "read_cumulative_latency_millis_total":90,"read_cumulative_latency_millis_dist":[0,0,30,0,0,0,0,60],
             "read_count_block_size_dist":[0,0,3,0,0,0,0,6]}
            """);
        var delta = "\n>>> >>> >>> >>> >>>\nBackend Read Bandwidth:     2048 KB/S\nBackend Average IO Size:    1048576 Bytes\n"
                    + "Backend Average Latency:    10 millis\n\nBlock Sizes/millis:\n"
                    + "<1K     1K~     4K~     16K~    64K~    128K~   512K~   1M~     \n"
                    + "0       0       0       0       0       0       0       10      \n<<< <<< <<< <<< <<<\n";
        Assert.Equal(delta, NydusctlFormat.BackendDelta(body, later, 2));
    }

    [Fact]
    public void Metrics_fsstats_prints_latency_counts_errors_and_fop_counters()
    {
        var body = Json("""
            {"data_read":3145728,"fop_hits":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15],"fop_errors":[0,0,0,0,2,0,0,0,0,0,0,0,0,0,0],
             "read_latency_dist":[5,1,0,0,0,0,0,0]}
            """);
        var expected = "\n" + "Read Latency:".PadRight(16) + "<1ms    ~20ms   ~50ms   ~100ms  ~500ms  ~1s     ~2s     2s~     " + "\n"
                       + "Reads Count:".PadRight(16) + "5       1       0       0       0       0       0       0       " + "\n\n"
                       + "Read Errors: 2\nRead Data: 3145728Bytes (3MB)\n"
                       + "\nFOP Counters:\n"
                       + "Getattr(1) Readlink(2) Open(3) Release(4) Read(5) Statfs(6) Getxattr(7) Listxattr(8)\n"
                       + "Opendir(9) Lookup(10) Readdir(11) Readdirplus(12) Access(13) Forget(14) BatchForget(15)\n";
        Assert.Equal(expected, NydusctlFormat.FsStats(body));
    }

    [Fact]
    public void An_api_error_is_nydusctls_error_line()
    {
        Assert.Equal("Error: Request failed. Object {\"code\": String(\"NotFound\"), \"message\": String(\"no \\\"x\\\"\")}",
            NydusctlFormat.RequestFailed("""{"code":"NotFound","message":"no \"x\""}"""));
    }

    private static Task<(int Code, string Stdout, string Stderr)> CtlAsync(string socket, params string[] args) =>
        NydusdProcess.RunRawAsync(Wait, ["ctl", "-S", socket, .. args]);

    [FuseFact]
    public async Task Ctl_speaks_every_nydusctl_verb_against_a_real_daemon()
    {
        using var dir = new TempDir("ctl");
        var image = SmallImage.Make(dir.Path, "a", seed: 71);
        var config = dir.Combine("a.json");
        await File.WriteAllTextAsync(config, SmallImage.Config(dir.Path));
        await using var daemon = await NydusdApiDaemon.StartAsync(dir, "ctl-" + Guid.NewGuid().ToString("N")[..8]);
        var sock = daemon.ApiSocket;

        // mount: the config file's text is sent, as nydusctl does; nothing printed on success.
        var (code, stdout, stderr) = await CtlAsync(sock, "mount", "-s", image.Image, "-c", config, "-m", "/a", "-t", "rafs");
        Assert.True(code == 0, stderr);
        Assert.Equal("", stdout);
        image.AssertServedAt(Path.Combine(daemon.MountPoint, "a"));

        (code, stdout, _) = await CtlAsync(sock, "info");
        Assert.Equal(0, code);
        Assert.Matches("^\nVersion:                \"[^\"]+\"\nStatus:                 \"RUNNING\"\nProfile:                \"(debug|release)\"\n"
                       + "Commit:                 \"[0-9a-f]{40}\"\nInstances:\n\tInstance Mountpoint:  /a\n\tType:  Rafs\n"
                       + "\tMounted Time:  [^\n]+\n\tMode:  direct\n\tPrefetch:  (true|false)\n\tPrefetch Merging Size:  \\d+\n\n$", stdout);
        (code, stdout, _) = await CtlAsync(sock, "-r", "info");
        Assert.Equal(0, code);
        Assert.Equal("RUNNING", Json(stdout).GetProperty("state").GetString());

        Assert.Equal(0, (await CtlAsync(sock, "set", "log-level", "debug")).Code);
        (code, _, stderr) = await CtlAsync(sock, "set", "log-level", "loud");
        Assert.Equal(1, code);
        Assert.StartsWith("Error: Request failed. Object {\"code\": String(\"BadRequest\")", stderr);
        (code, _, stderr) = await CtlAsync(sock, "set", "volume", "11");
        Assert.NotEqual(0, code);

        (code, stdout, _) = await CtlAsync(sock, "metrics", "fsstats");
        Assert.Equal(0, code);
        Assert.StartsWith("\nRead Latency:   <1ms", stdout);
        Assert.Matches(@"\nRead Data: \d+Bytes \(\d+MB\)\n", stdout);
        Assert.Contains("\nFOP Counters:\nGetattr(", stdout);
        (code, stdout, _) = await CtlAsync(sock, "-r", "metrics", "fsstats");
        Assert.Equal(0, code);
        Assert.True(Json(stdout).GetProperty("data_read").GetInt64() > 0);

        // A localfs backend and a dummy cache keep no such counters here: nydusctl's error line, exit 1, no crash.
        foreach (var category in new[] { "backend", "cache" })
        {
            (code, _, stderr) = await CtlAsync(sock, "metrics", category);
            Assert.Equal(1, code);
            Assert.StartsWith("Error: Request failed. Object {\"code\": String(\"NotFound\")", stderr);
        }
        (code, stdout, _) = await CtlAsync(sock, "metrics", "files", "--id", "/a");
        Assert.Equal(0, code);
        Assert.Equal(JsonValueKind.Object, Json(stdout).ValueKind);
        Assert.Equal(0, (await CtlAsync(sock, "metrics", "inflight")).Code);

        (code, stdout, _) = await CtlAsync(sock, "umount", "-m", "/a");
        Assert.Equal(0, code);
        Assert.Equal("", stdout);
        Assert.False(Directory.Exists(Path.Combine(daemon.MountPoint, "a")));
        (code, _, stderr) = await CtlAsync(sock, "umount", "-m", "/a");
        Assert.Equal(1, code);
        Assert.StartsWith("Error: Request failed. Object {\"code\": String(\"NotFound\")", stderr);

        // A config file that cannot be read is refused before anything is sent.
        (code, _, stderr) = await CtlAsync(sock, "mount", "-s", image.Image, "-c", dir.Combine("missing.json"), "-m", "/b", "-t", "rafs");
        Assert.Equal(1, code);
        Assert.Contains("failed to read mount config", stderr);
    }
}
