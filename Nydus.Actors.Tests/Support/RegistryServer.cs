using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;

namespace Nydus.Actors.Tests.Support;

/// <summary>
/// A real Docker distribution registry (Debian's <c>docker-registry</c>) on 127.0.0.1 with a free port and a temp
/// storage dir, optionally with htpasswd or token auth. <see cref="Stop"/>/<see cref="Start"/> take it down and up
/// again on the same port and storage (fault tests). Dispose kills the process and deletes the dir.
/// </summary>
public sealed class RegistryServer : IDisposable
{
    public const string BinaryPath = "/usr/bin/docker-registry";

    private readonly TempDir _dir;
    private readonly string _configPath;
    private readonly StringBuilder _output = new();
    private Process? _process;

    private RegistryServer()
    {
        _dir = new TempDir("registry");
        Port = FreePort();
        _configPath = _dir.Combine("config.yml");
    }

    public int Port { get; }

    public string Host => $"127.0.0.1:{Port}";

    /// <summary><c>https</c> when started with <c>tls</c>, else <c>http</c>.</summary>
    public string Scheme { get; private set; } = "http";

    public string BaseUrl => $"{Scheme}://{Host}";

    /// <summary>With <c>tls</c>: the self-signed certificate (PEM) the registry serves, for <c>ca_cert_files</c>.</summary>
    public string? CertificatePath { get; private set; }

    /// <summary>A client for the test's own calls: with TLS it trusts the registry's certificate whatever it is.</summary>
    private HttpClient TestClient(TimeSpan timeout) => new(new SocketsHttpHandler
    {
        SslOptions = new System.Net.Security.SslClientAuthenticationOptions { RemoteCertificateValidationCallback = (_, _, _, _) => true },
    }) { Timeout = timeout };

    /// <summary>Where a test may put auth files (htpasswd, token root certificate).</summary>
    public TempDir Dir => _dir;

    public static bool IsAvailable => File.Exists(BinaryPath);

    /// <summary>Starts a registry; <paramref name="authSection"/> is a YAML <c>auth:</c> block built with <see cref="Dir"/>.</summary>
    /// <param name="tls">Serve HTTPS with a self-signed certificate for 127.0.0.1 made by openssl (<see cref="CertificatePath"/>).</param>
    /// <param name="accessLog">Log every request (method, path, status, bytes sent) to <see cref="Output"/>.</param>
    public static RegistryServer Start(Func<TempDir, string>? authSection = null, bool tls = false, bool accessLog = false)
    {
        if (!IsAvailable)
        {
            throw new InvalidOperationException(
                $"{BinaryPath} is missing: install Debian's docker-registry (apt-get install -y docker-registry)");
        }

        var server = new RegistryServer();
        try
        {
            string storage = server._dir.Combine("storage");
            Directory.CreateDirectory(storage);
            string auth = authSection?.Invoke(server._dir) ?? "";
            string tlsSection = "";
            if (tls)
            {
                server.CertificatePath = server._dir.Combine("registry-cert.pem");
                string key = server._dir.Combine("registry-key.pem");
                MakeSelfSignedCertificate(server.CertificatePath, key);
                server.Scheme = "https";
                tlsSection = $"\n  tls:\n    certificate: {server.CertificatePath}\n    key: {key}";
            }

            File.WriteAllText(server._configPath, $"""
                version: 0.1
                log:
                  level: warn
                  accesslog:
                    disabled: {(accessLog ? "false" : "true")}
                storage:
                  filesystem:
                    rootdirectory: {storage}
                http:
                  addr: 127.0.0.1:{server.Port}{tlsSection}
                {auth}
                """);
            server.Start();
            return server;
        }
        catch
        {
            server.Dispose();
            throw;
        }
    }

    /// <summary>Starts the process (again) and waits until <c>/v2/</c> answers.</summary>
    public void Start()
    {
        var info = new ProcessStartInfo(BinaryPath)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        info.ArgumentList.Add("serve");
        info.ArgumentList.Add(_configPath);
        var process = new Process { StartInfo = info };
        process.OutputDataReceived += (_, e) => Append(e.Data);
        process.ErrorDataReceived += (_, e) => Append(e.Data);
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        _process = process;

        using var http = TestClient(TimeSpan.FromSeconds(2));
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            if (process.HasExited)
            {
                throw new InvalidOperationException($"docker-registry exited at start: {Output}");
            }

            try
            {
                using HttpResponseMessage response = http.GetAsync($"{BaseUrl}/v2/").GetAwaiter().GetResult();
                return;
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException && deadline.Elapsed < TimeSpan.FromSeconds(20))
            {
                Thread.Sleep(50);
            }
        }
    }

    /// <summary>Kills the process; the port and storage stay reserved for <see cref="Start()"/>.</summary>
    public void Stop()
    {
        if (_process is { } process)
        {
            try
            {
                process.Kill(entireProcessTree: true);
            }
            catch (InvalidOperationException)
            {
            }

            process.WaitForExit(10_000);
            process.Dispose();
            _process = null;
        }
    }

    public string Output
    {
        get { lock (_output) return _output.ToString(); }
    }

    /// <summary>
    /// Uploads <paramref name="content"/> as a blob of <paramref name="repo"/> with the monolithic upload API
    /// (POST uploads/, then PUT ?digest=) and returns its digest hex, which is its blob id.
    /// </summary>
    public string Push(string repo, byte[] content, AuthenticationHeaderValue? authorization = null)
    {
        string digest = Convert.ToHexStringLower(SHA256.HashData(content));
        using var http = TestClient(TimeSpan.FromSeconds(30));
        using var start = new HttpRequestMessage(HttpMethod.Post, $"{BaseUrl}/v2/{repo}/blobs/uploads/");
        start.Headers.Authorization = authorization;
        using HttpResponseMessage started = http.Send(start);
        if (started.StatusCode != HttpStatusCode.Accepted || started.Headers.Location is null)
        {
            throw new InvalidOperationException($"upload start to {repo} answered {(int)started.StatusCode}");
        }

        var location = new UriBuilder(new Uri(new Uri(BaseUrl), started.Headers.Location));
        location.Query = (location.Query.Length > 1 ? location.Query.TrimStart('?') + "&" : "") + $"digest=sha256:{digest}";
        using var put = new HttpRequestMessage(HttpMethod.Put, location.Uri) { Content = new ByteArrayContent(content) };
        put.Content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
        put.Headers.Authorization = authorization;
        using HttpResponseMessage done = http.Send(put);
        if (done.StatusCode != HttpStatusCode.Created)
        {
            throw new InvalidOperationException($"upload of {digest} to {repo} answered {(int)done.StatusCode}");
        }

        return digest;
    }

    public void Dispose()
    {
        Stop();
        _dir.Dispose();
    }

    private void Append(string? line)
    {
        if (line is not null)
        {
            lock (_output) _output.AppendLine(line);
        }
    }

    /// <summary>A self-signed certificate for IP 127.0.0.1, valid one day, made by openssl as an operator would.</summary>
    private static void MakeSelfSignedCertificate(string certificate, string key)
    {
        var info = new ProcessStartInfo("openssl")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string arg in new[]
                 {
                     "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", certificate, "-days", "1",
                     "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                 })
        {
            info.ArgumentList.Add(arg);
        }

        using var process = Process.Start(info)!;
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        process.StandardOutput.ReadToEnd();
        if (!process.WaitForExit(30_000) || process.ExitCode != 0)
        {
            throw new InvalidOperationException($"openssl could not make a certificate: {stderr.Result}");
        }
    }

    public static int FreePort()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        int port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }
}
