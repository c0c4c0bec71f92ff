namespace Nydus.Actors.Config;

/// <summary>
/// Upstream's runtime configuration map (nydus_utils::config, served by <c>PUT/GET /api/v1/config</c>): values
/// per instance id (the virtual mountpoint, as upstream's backends are created with it) and key. Only
/// <see cref="RegistryAuthKey"/> is served: nydus-snapshotter sends it to rotate registry credentials of a running
/// instance. Values live in memory only (never journaled nor logged); a restarted daemon starts from its config
/// files again. Thread-safe; <see cref="Lock"/> also orders applying a value against registering an instance.
/// </summary>
public sealed class RuntimeConfigStore
{
    public const string RegistryAuthKey = "registry_auth";
    public const string ProxyUrlKey = "proxy_url";
    public const string DragonflySchedulerEndpointKey = "dragonfly_scheduler_endpoint";

    /// <summary>What <c>GET</c> shows instead of a credential.</summary>
    public const string Redacted = "<redacted>";

    private readonly Dictionary<(string Id, string Key), string> _values = new();

    public object Lock => _values;

    /// <summary>Stores the values for <paramref name="id"/>; the caller checked the keys (<see cref="CheckKey"/>).</summary>
    public void Set(string id, IReadOnlyDictionary<string, string> values)
    {
        lock (Lock)
        {
            foreach (var (key, value) in values)
            {
                _values[(id, key)] = value;
            }
        }
    }

    public string? Get(string id, string key)
    {
        lock (Lock)
        {
            return _values.TryGetValue((id, key), out string? value) ? value : null;
        }
    }

    /// <summary>
    /// Upstream's <c>get_all</c>: the keys of <paramref name="id"/>, or every <c>id:key</c> without one. Credentials
    /// are shown as <see cref="Redacted"/> (upstream returns them; the API is no place to read secrets back).
    /// </summary>
    public Dictionary<string, string> Snapshot(string? id)
    {
        lock (Lock)
        {
            return _values
                .Where(kv => id is null || kv.Key.Id == id)
                .ToDictionary(kv => id is null ? $"{kv.Key.Id}:{kv.Key.Key}" : kv.Key.Key,
                    kv => kv.Key.Key == RegistryAuthKey && kv.Value.Length > 0 ? Redacted : kv.Value);
        }
    }

    /// <summary>
    /// Null when <paramref name="key"/> and its value are served; else why not, naming the key (never the value).
    /// <c>registry_auth</c> must be empty (clears the credentials) or base64 of <c>user:password</c>.
    /// </summary>
    public static (bool Unsupported, string Message)? CheckKey(string key, string value)
    {
        switch (key)
        {
            case RegistryAuthKey:
                return value.Length == 0 || IsBasicAuth(value)
                    ? null
                    : (false, "registry_auth: must be base64 of 'user:password' (or empty to clear it)");
            case ProxyUrlKey:
            case DragonflySchedulerEndpointKey:
                return (true, $"{key}: changing it at run time is not supported by this build");
            default:
                return (false, $"unknown configuration key '{key}' (upstream's keys: {RegistryAuthKey}, {ProxyUrlKey}, {DragonflySchedulerEndpointKey})");
        }
    }

    private static bool IsBasicAuth(string value)
    {
        var bytes = new byte[(value.Length * 3 / 4) + 3];
        return Convert.TryFromBase64String(value, bytes, out int length) && bytes.AsSpan(0, length).IndexOf((byte)':') > 0;
    }
}
