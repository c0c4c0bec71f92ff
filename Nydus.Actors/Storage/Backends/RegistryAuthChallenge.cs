using System.Net.Http.Headers;

namespace Nydus.Actors.Storage.Backends;

/// <summary>
/// One <c>WWW-Authenticate</c> challenge of a registry: its scheme (<c>Basic</c> or <c>Bearer</c>) and, for
/// Bearer, where to get a token (<c>realm</c>) for which <c>service</c> and <c>scope</c>. Format: the Docker
/// token authentication spec, e.g. <c>Bearer realm="https://auth/token",service="reg",scope="repository:a/b:pull"</c>.
/// </summary>
public sealed record RegistryAuthChallenge(string Scheme, string? Realm, string? Service, string? Scope)
{
    public bool IsBearer => string.Equals(Scheme, "Bearer", StringComparison.OrdinalIgnoreCase);

    public bool IsBasic => string.Equals(Scheme, "Basic", StringComparison.OrdinalIgnoreCase);

    /// <summary>The first Bearer challenge of the response, else the first Basic one, else null.</summary>
    public static RegistryAuthChallenge? FromHeaders(HttpHeaderValueCollection<AuthenticationHeaderValue> headers)
    {
        RegistryAuthChallenge? basic = null;
        foreach (AuthenticationHeaderValue header in headers)
        {
            RegistryAuthChallenge challenge = Parse(header.Scheme, header.Parameter);
            if (challenge.IsBearer)
            {
                return challenge;
            }

            basic ??= challenge.IsBasic ? challenge : null;
        }

        return basic;
    }

    /// <summary>Parses the comma-separated <c>key="value"</c> list after the scheme; quoted values may hold commas.</summary>
    public static RegistryAuthChallenge Parse(string scheme, string? parameters)
    {
        string? realm = null, service = null, scope = null;
        ReadOnlySpan<char> rest = parameters;
        while (!rest.IsEmpty)
        {
            rest = rest.TrimStart(" ,\t");
            int equals = rest.IndexOf('=');
            if (equals <= 0)
            {
                break;
            }

            string key = rest[..equals].Trim().ToString();
            rest = rest[(equals + 1)..].TrimStart();
            string value;
            if (!rest.IsEmpty && rest[0] == '"')
            {
                int close = rest[1..].IndexOf('"');
                if (close < 0)
                {
                    value = rest[1..].ToString();
                    rest = default;
                }
                else
                {
                    value = rest.Slice(1, close).ToString();
                    rest = rest[(close + 2)..];
                }
            }
            else
            {
                int comma = rest.IndexOf(',');
                value = (comma < 0 ? rest : rest[..comma]).Trim().ToString();
                rest = comma < 0 ? default : rest[(comma + 1)..];
            }

            switch (key.ToLowerInvariant())
            {
                case "realm": realm = value; break;
                case "service": service = value; break;
                case "scope": scope = value; break;
            }
        }

        return new RegistryAuthChallenge(scheme, realm, service, scope);
    }
}
