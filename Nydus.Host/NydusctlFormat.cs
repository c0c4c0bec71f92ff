using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Nydus.Host;

/// <summary>
/// The human-readable output of upstream's nydusctl (src/bin/nydusctl/commands.rs), reproduced from the same API
/// bodies so that scripts written against nydusctl read `nydusd ctl` alike. nydusctl prints JSON values with
/// serde_json's Display (strings quoted, null as "null") and computed numbers with Rust's f64 Display ("1", "0.5",
/// "NaN"); both are mimicked here. Where nydusctl would panic on a missing field, we print "null" or 0 instead.
/// </summary>
public static class NydusctlFormat
{
    /// <summary>Block size buckets of the backend metrics (upstream utils/src/metrics.rs request_size_index).</summary>
    private static readonly string[] Sizes = ["<1K", "1K~", "4K~", "16K~", "64K~", "128K~", "512K~", "1M~"];

    private static readonly string[] Periods = ["<1ms", "~20ms", "~50ms", "~100ms", "~500ms", "~1s", "~2s", "2s~"];

    /// <summary>`nydusctl info`: GET /api/v1/daemon.</summary>
    public static string Info(JsonElement info)
    {
        var text = new StringBuilder();
        var version = Get(info, "version");
        text.Append('\n')
            .Append("Version:                ").Append(Display(Get(version, "package_ver"))).Append('\n')
            .Append("Status:                 ").Append(Display(Get(info, "state"))).Append('\n')
            .Append("Profile:                ").Append(Display(Get(version, "profile"))).Append('\n')
            .Append("Commit:                 ").Append(Display(Get(version, "git_commit"))).Append('\n');
        if (Get(info, "backend_collection") is { ValueKind: JsonValueKind.Object } backends)
        {
            var any = false;
            foreach (var (mountpoint, backend) in backends.EnumerateObject().Select(p => (p.Name, p.Value)))
            {
                if (!any) text.Append("Instances:\n");
                any = true;
                // FsBackendType's Display is its Rust Debug name.
                var type = Get(backend, "backend_type")?.GetString() switch
                {
                    "rafs" => "Rafs",
                    "passthrough_fs" or "passthroughfs" or "passthrough" => "PassthroughFs",
                    var other => other ?? "null",
                };
                text.Append("\tInstance Mountpoint:  ").Append(mountpoint).Append('\n')
                    .Append("\tType:  ").Append(type).Append('\n')
                    .Append("\tMounted Time:  ").Append(Get(backend, "mounted_time")?.ToString() ?? "null").Append('\n');
                if (type == "Rafs")
                {
                    var config = Get(backend, "config");
                    var prefetch = Get(Get(config, "cache"), "prefetch");
                    text.Append("\tMode:  ").Append(Get(Get(config, "rafs"), "mode")?.ToString() ?? "null").Append('\n')
                        .Append("\tPrefetch:  ").Append(Plain(Get(prefetch, "enable"), "false")).Append('\n')
                        .Append("\tPrefetch Merging Size:  ").Append(Plain(Get(prefetch, "batch_size"), "0")).Append('\n')
                        .Append('\n');
                }
            }
        }
        return text.ToString();
    }

    /// <summary>`nydusctl metrics cache`: GET /api/v1/metrics/blobcache.</summary>
    public static string Cache(JsonElement m)
    {
        double F(string key) => Get(m, key) is { ValueKind: JsonValueKind.Number } n ? n.GetDouble() : 0;
        ulong U(string key) => Get(m, key) is { ValueKind: JsonValueKind.Number } n && n.TryGetUInt64(out var v) ? v : 0;
        var duration = F("prefetch_end_time_secs") + F("prefetch_end_time_millis") / 1000.0
                       - (F("prefetch_begin_time_secs") + F("prefetch_begin_time_millis") / 1000.0);
        var amount = F("prefetch_data_amount");
        var requests = U("prefetch_requests_count");
        return $"""

            Partial Hits:               {Display(Get(m, "partial_hits"))}
            Whole Hits:                 {Display(Get(m, "whole_hits"))}
            Total Read:                 {Display(Get(m, "total"))}
            Directory:                  {Display(Get(m, "store_path"))}
            Files:                      {Display(Get(m, "underlying_files"))}
            Persister Buffer:           {Display(Get(m, "buffered_backend_size"))}

            Prefetch Workers:           {Display(Get(m, "prefetch_workers"))}
            Prefetch Amount:            {RustF64(amount)} = {RustF64(amount / 1024.0)} KB
            Prefetch Requests:          {Display(Get(m, "prefetch_requests_count"))}
            Prefetch Average Size:      {(requests == 0 ? 0 : U("prefetch_data_amount") / requests)} Bytes
            Prefetch Duration:          {RustF64(duration)} Seconds
            Prefetch Bandwidth:         {RustF64(amount / 1024.0 / 1024.0 / duration)} MB/S
            Prefetch Request Latency:   {RustF64(F("prefetch_cumulative_time_millis") / F("prefetch_requests_count") / 1000.0)} Seconds
            Prefetch Unmerged:          {Display(Get(m, "prefetch_unmerged_chunks"))}

            """.Replace("\r\n", "\n");
    }

    /// <summary>`nydusctl metrics backend` (without -I): GET /api/v1/metrics/backend.</summary>
    public static string Backend(JsonElement m)
    {
        var text = new StringBuilder();
        var amount = Get(m, "read_amount_total") is { ValueKind: JsonValueKind.Number } a ? a.GetDouble() : 0;
        text.Append('\n')
            .Append("Backend Type:       ").Append(Display(Get(m, "backend_type"))).Append('\n')
            .Append("Read Amount:        ").Append(Display(Get(m, "read_amount_total"))).Append(" Bytes (")
            .Append(RustF64(amount / 1024.0 / 1024.0)).Append(" MB)\n")
            .Append("Read Count:         ").Append(Display(Get(m, "read_count"))).Append('\n')
            .Append("Read Errors:        ").Append(Display(Get(m, "read_errors"))).Append('\n');
        var latency = Array(m, "read_cumulative_latency_millis_dist", Sizes.Length);
        var hits = Array(m, "read_count_block_size_dist", Sizes.Length);
        text.Append('\n').Append(Pad("Block Sizes:", 25));
        foreach (var s in Sizes) text.Append(Pad(s, 8));
        text.Append('\n').Append(Pad("Average Latency(millis):", 25));
        for (var i = 0; i < Sizes.Length; i++) text.Append(Pad((hits[i] == 0 ? 0 : latency[i] / hits[i]).ToString(CultureInfo.InvariantCulture), 8));
        text.Append('\n').Append('\n').Append(Pad("Block Sizes:", 25));
        foreach (var s in Sizes) text.Append(Pad(s, 8));
        text.Append('\n').Append(Pad("Request Count:", 25));
        foreach (var h in hits) text.Append(Pad(h.ToString(CultureInfo.InvariantCulture), 8));
        text.Append('\n');
        return text.ToString();
    }

    /// <summary>One round of `nydusctl metrics backend -I N`: the change between two reads over N seconds.</summary>
    public static string BackendDelta(JsonElement last, JsonElement current, uint intervalSecs)
    {
        ulong Delta(string key) => Sat(U64(current, key), U64(last, key));
        var data = Delta("read_amount_total");
        var requests = Delta("read_count");
        var latency = Delta("read_cumulative_latency_millis_total");
        var oldLatency = Array(last, "read_cumulative_latency_millis_dist", Sizes.Length);
        var newLatency = Array(current, "read_cumulative_latency_millis_dist", Sizes.Length);
        var oldHits = Array(last, "read_count_block_size_dist", Sizes.Length);
        var newHits = Array(current, "read_count_block_size_dist", Sizes.Length);
        var text = new StringBuilder();
        text.Append('\n').Append(">>> >>> >>> >>> >>>\n")
            .Append("Backend Read Bandwidth:     ").Append(intervalSecs == 0 ? 0 : data / (intervalSecs * 1024UL)).Append(" KB/S\n")
            .Append("Backend Average IO Size:    ").Append(requests == 0 ? 0 : data / requests).Append(" Bytes\n")
            .Append("Backend Average Latency:    ").Append(requests == 0 ? 0 : latency / requests).Append(" millis\n")
            .Append('\n').Append("Block Sizes/millis:\n");
        foreach (var s in Sizes) text.Append(Pad(s, 8));
        text.Append('\n');
        for (var i = 0; i < Sizes.Length; i++)
        {
            var hits = Sat(newHits[i], oldHits[i]);
            text.Append(Pad((hits == 0 ? 0 : Sat(newLatency[i], oldLatency[i]) / hits).ToString(CultureInfo.InvariantCulture), 8));
        }
        text.Append('\n').Append("<<< <<< <<< <<< <<<\n");
        return text.ToString();
    }

    /// <summary>`nydusctl metrics fsstats`: GET /api/v1/metrics.</summary>
    public static string FsStats(JsonElement m)
    {
        var text = new StringBuilder();
        text.Append('\n').Append(Pad("Read Latency:", 16));
        foreach (var p in Periods) text.Append(Pad(p, 8));
        text.Append('\n').Append(Pad("Reads Count:", 16));
        foreach (var d in Array(m, "read_latency_dist", 0)) text.Append(Pad(d.ToString(CultureInfo.InvariantCulture), 8));
        // println!("\n") after the counts: the end of that line and one empty line.
        text.Append("\n\n");
        var errors = Array(m, "fop_errors", 15);
        var hits = Array(m, "fop_hits", 15);
        var dataRead = U64(m, "data_read");
        text.Append("Read Errors: ").Append(errors[4]).Append('\n')
            .Append("Read Data: ").Append(dataRead).Append("Bytes (").Append(dataRead / 1024 / 1024).Append("MB)\n")
            .Append('\n').Append("FOP Counters:\n")
            .Append(CultureInfo.InvariantCulture, $"Getattr({hits[0]}) Readlink({hits[1]}) Open({hits[2]}) Release({hits[3]}) Read({hits[4]}) Statfs({hits[5]}) Getxattr({hits[6]}) Listxattr({hits[7]})\n")
            .Append(CultureInfo.InvariantCulture, $"Opendir({hits[8]}) Lookup({hits[9]}) Readdir({hits[10]}) Readdirplus({hits[11]}) Access({hits[12]}) Forget({hits[13]}) BatchForget({hits[14]})\n");
        return text.ToString();
    }

    /// <summary>nydusctl's error line for an API error body (anyhow's "Error: " and serde_json's Debug of the body).</summary>
    public static string RequestFailed(string body)
    {
        try
        {
            using var doc = JsonDocument.Parse(body);
            return "Error: Request failed. " + Debug(doc.RootElement);
        }
        catch (JsonException)
        {
            return "Error: Request failed. " + body;
        }
    }

    /// <summary>serde_json's Display of a value (compact JSON; a missing field is Value::Null).</summary>
    public static string Display(JsonElement? value) => value switch
    {
        null => "null",
        { ValueKind: JsonValueKind.String } s => Quote(s.GetString()!),
        { } v => Compact(v),
    };

    // serde_json escapes only quotes, backslashes and control characters.
    private static readonly JsonSerializerOptions Relaxed = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private static string Quote(string s) => JsonSerializer.Serialize(s, Relaxed);

    /// <summary>Rust's Display of an f64: shortest round trip, no exponent, "NaN", "inf".</summary>
    public static string RustF64(double value)
    {
        if (double.IsNaN(value)) return "NaN";
        if (double.IsPositiveInfinity(value)) return "inf";
        if (double.IsNegativeInfinity(value)) return "-inf";
        if (value == Math.Floor(value) && Math.Abs(value) < 1e15) return ((long)value).ToString(CultureInfo.InvariantCulture);
        var text = value.ToString("R", CultureInfo.InvariantCulture);
        // .NET switches to exponent notation for very small or large values; Rust never does.
        return text.Contains('E') ? ((decimal)value).ToString(CultureInfo.InvariantCulture) : text;
    }

    private static string Compact(JsonElement v) => JsonSerializer.Serialize(v, Relaxed);

    /// <summary>serde_json's Debug of a value, as nydusctl prints an error body.</summary>
    private static string Debug(JsonElement v) => v.ValueKind switch
    {
        JsonValueKind.Object => "Object {" + string.Join(", ", v.EnumerateObject().Select(p => Quote(p.Name) + ": " + Debug(p.Value))) + "}",
        JsonValueKind.Array => "Array [" + string.Join(", ", v.EnumerateArray().Select(Debug)) + "]",
        JsonValueKind.String => "String(" + Quote(v.GetString()!) + ")",
        JsonValueKind.Number => "Number(" + v.GetRawText() + ")",
        JsonValueKind.True => "Bool(true)",
        JsonValueKind.False => "Bool(false)",
        _ => "Null",
    };

    private static string Plain(JsonElement? v, string missing) => v is { } e ? e.GetRawText() : missing;

    private static string Pad(string s, int width) => s.PadRight(width);

    private static ulong Sat(ulong a, ulong b) => a > b ? a - b : 0;

    private static ulong U64(JsonElement m, string key) =>
        Get(m, key) is { ValueKind: JsonValueKind.Number } n && n.TryGetUInt64(out var v) ? v : 0;

    /// <summary>A numeric array field, padded with zeros to at least <paramref name="length"/> entries.</summary>
    private static ulong[] Array(JsonElement m, string key, int length)
    {
        var values = Get(m, key) is { ValueKind: JsonValueKind.Array } a
            ? a.EnumerateArray().Select(e => e.ValueKind == JsonValueKind.Number && e.TryGetUInt64(out var u) ? u : 0).ToList()
            : [];
        while (values.Count < length) values.Add(0);
        return values.ToArray();
    }

    private static JsonElement? Get(JsonElement? parent, string key) =>
        parent is { ValueKind: JsonValueKind.Object } p && p.TryGetProperty(key, out var value) ? value : null;
}
