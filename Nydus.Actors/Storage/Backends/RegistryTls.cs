using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Nydus.Actors.Config;

namespace Nydus.Actors.Storage.Backends;

/// <summary>
/// The TLS trust of one registry backend: the system's roots, plus the certificates of <c>ca_cert_files</c> (as
/// upstream adds them to reqwest's roots), or nothing checked at all with <c>skip_verify</c>. The host name is
/// always checked unless <c>skip_verify</c>.
/// </summary>
internal static class RegistryTls
{
    /// <summary>Null when the defaults (system roots only) apply.</summary>
    public static SslClientAuthenticationOptions? Options(RegistryBackendSettings settings)
    {
        if (settings.SkipVerify)
        {
            return new SslClientAuthenticationOptions { RemoteCertificateValidationCallback = static (_, _, _, _) => true };
        }

        if (settings.CaCertFiles.Count == 0)
        {
            return null;
        }

        X509Certificate2Collection extra = LoadAll(settings.CaCertFiles);
        return new SslClientAuthenticationOptions
        {
            RemoteCertificateValidationCallback = (_, certificate, _, errors) =>
                errors == SslPolicyErrors.None
                || (errors == SslPolicyErrors.RemoteCertificateChainErrors && certificate is not null
                    && ChainsTo(certificate, extra)),
        };
    }

    /// <summary>Reads every PEM certificate of the files; a missing, unreadable or empty file is a config error naming it.</summary>
    private static X509Certificate2Collection LoadAll(IReadOnlyList<string> files)
    {
        var all = new X509Certificate2Collection();
        foreach (string file in files)
        {
            try
            {
                int before = all.Count;
                all.ImportFromPemFile(file);
                if (all.Count == before)
                {
                    throw new CryptographicException("no PEM certificate in it");
                }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or CryptographicException)
            {
                throw new ConfigException(ConfigErrorKind.InvalidBackend,
                    $"backend.registry.ca_cert_files: cannot load certificates from '{file}': {e.Message}");
            }
        }

        return all;
    }

    private static bool ChainsTo(X509Certificate certificate, X509Certificate2Collection roots)
    {
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.AddRange(roots);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        using var leaf = new X509Certificate2(certificate);
        return chain.Build(leaf);
    }
}
