namespace Nydus.Actors.Storage.Backends;

/// <summary>
/// The <c>registry_auth</c> (base64 of <c>user:password</c>) one <see cref="RegistryBackend"/> uses, replaceable
/// while it serves: nydus-snapshotter rotates credentials of running daemons with <c>PUT /api/v1/config</c>.
/// A renewal takes effect at the next registry or token request (<see cref="RegistryAuthenticator"/> compares
/// <see cref="Version"/> before each one); nothing is remounted. Renewed credentials live in memory only: they are
/// never journaled, and a restarted daemon starts again from its config file (which the snapshotter rewrites too).
/// Thread-safe: one immutable pair swapped atomically. <see cref="ToString"/> never shows the secret.
/// </summary>
public sealed class RegistryCredentials
{
    private State _state;

    public RegistryCredentials(string? auth) => _state = new State(Normalize(auth), 0);

    /// <summary>The current credentials and their version (0 = as configured, +1 per renewal).</summary>
    public (string? Auth, long Version) Current
    {
        get
        {
            State state = Volatile.Read(ref _state);
            return (state.Auth, state.Version);
        }
    }

    public long Version => Volatile.Read(ref _state).Version;

    /// <summary>Replaces the credentials; empty or null clears them (anonymous pulls), as upstream's config API.</summary>
    public void Renew(string? auth)
    {
        State current, next;
        do
        {
            current = Volatile.Read(ref _state);
            next = new State(Normalize(auth), current.Version + 1);
        }
        while (!ReferenceEquals(Interlocked.CompareExchange(ref _state, next, current), current));
    }

    public override string ToString() =>
        $"registry credentials ({(Volatile.Read(ref _state).Auth is null ? "none" : "set")}, version {Version})";

    private static string? Normalize(string? auth) => string.IsNullOrEmpty(auth) ? null : auth;

    /// <summary>A class, not a record: a generated ToString would print the secret.</summary>
    private sealed class State(string? auth, long version)
    {
        public string? Auth { get; } = auth;
        public long Version { get; } = version;
    }
}
