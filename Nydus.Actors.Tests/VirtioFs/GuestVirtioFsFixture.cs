using Nydus.Actors.Tests.Block;
using Nydus.Actors.Tests.RafsFuse;
using Nydus.Actors.Tests.Support;

namespace Nydus.Actors.Tests.VirtioFs;

/// <summary>
/// One boot of the test VM for the virtio-fs tests: five <c>nydusd virtiofs</c> processes on the host (the built binary)
/// serve, over vhost-user-fs-pci devices, the corner-case tree as a chunked mkfs.erofs image (<c>--chunksize=4096
/// --blobdev</c>, blob through a localfs config; tag nydus0), the upstream RAFS v6 fixture (localfs dir; tag nydus1)
/// and the upstream RAFS v5 "repeatable" fixture with its blob pushed to the real docker-registry on loopback
/// (registry backend, blob cache; tag nydus2; the v6 fixture's blob is named by a digest that is not its file's, so a
/// registry cannot serve it); and, with <c>--blobfs</c>, the chunked image and the v6 fixture as their bootstrap and blob
/// files (tags nydus3, nydus4) that the guest loop-mounts with its own EROFS. scripts/vm/guest-virtiofs.sh mounts each with the guest kernel's virtiofs and writes its manifest and
/// md5sums to the exchange directory. The daemons and the registry are stopped, and the sockets removed, whatever happens.
/// </summary>
public sealed class GuestVirtioFsFixture : IDisposable
{
    private static readonly TimeSpan VmTimeout = TimeSpan.FromMinutes(6);

    private readonly Lazy<GuestRun> _run;
    private TreeBuilder? _tree;

    public GuestVirtioFsFixture()
    {
        _run = new Lazy<GuestRun>(Boot, LazyThreadSafetyMode.ExecutionAndPublication);
    }

    public GuestRun Run => _run.Value;

    /// <summary>What the two daemons logged (for failure messages).</summary>
    public string DaemonOutput { get; private set; } = "";

    /// <summary>The registry-backed daemon's blob cache directory.</summary>
    public string RegistryCacheDir { get; private set; } = "";

    public const string RepeatableBlobId = "7334a2594e133cf8ae364189c2276b090fc490c627bcc3fb1077f0419a538e00";

    private GuestRun Boot()
    {
        _tree = new TreeBuilder().BuildRich(hugeDirectory: false);
        string work = _tree.WorkDir;
        string image = Path.Combine(work, "chunked.erofs"), blob = Path.Combine(work, "chunked.blob");
        TreeBuilder.Run("mkfs.erofs", "--quiet", "--chunksize=4096", "--blobdev=" + blob, image, _tree.Root);
        string config = Path.Combine(work, "chunked.json");
        File.WriteAllText(config, GeneratedImageFuseTests.BlobFileConfig(blob));

        string exchange = Directory.CreateDirectory(Path.Combine(work, "out")).FullName;
        string erofsSocket = Path.Combine(work, "erofs.sock"), v6Socket = Path.Combine(work, "v6.sock"), registrySocket = Path.Combine(work, "registry.sock");
        string erofsBlobsSocket = Path.Combine(work, "erofs-blobs.sock"), v6BlobsSocket = Path.Combine(work, "v6-blobs.sock");
        NydusdProcess? erofs = null, v6 = null, remote = null, erofsBlobs = null, v6Blobs = null;
        RegistryServer? registry = null;
        try
        {
            registry = RegistryServer.Start();
            registry.Push("library/repeatable", File.ReadAllBytes(ImageFixtures.UpstreamFile("repeatable", "blobs", RepeatableBlobId)));
            RegistryCacheDir = Directory.CreateDirectory(Path.Combine(work, "cache")).FullName;
            string registryConfig = Path.Combine(work, "registry.json");
            File.WriteAllText(registryConfig, $$"""
                {
                  "version": 2,
                  "backend": { "type": "registry", "registry": { "scheme": "http", "host": "{{registry.Host}}", "repo": "library/repeatable", "timeout": 10, "connect_timeout": 10, "retry_limit": 1 } },
                  "cache": { "type": "blobcache", "filecache": { "work_dir": "{{RegistryCacheDir}}" } },
                  "rafs": { "mode": "direct" }
                }
                """);
            remote = NydusdProcess.Start("virtiofs", "--sock", registrySocket,
                "--bootstrap", ImageFixtures.UpstreamFile("repeatable", "sha256-nocompress-repeatable"), "--config", registryConfig);
            erofs = NydusdProcess.Start("virtiofs", "--sock", erofsSocket, "--bootstrap", image, "--config", config);
            v6 = NydusdProcess.Start("virtiofs", "--sock", v6Socket,
                "--bootstrap", ImageFixtures.UpstreamFile("bootstrap", "rafs-v6-2.2.boot"), "--localfs-dir", ImageFixtures.UpstreamFile("blobs"));
            // blobfs: the same two images as files (bootstrap, blobs) for the guest's own EROFS.
            erofsBlobs = NydusdProcess.Start("virtiofs", "--blobfs", "--sock", erofsBlobsSocket, "--bootstrap", image, "--config", config);
            v6Blobs = NydusdProcess.Start("virtiofs", "--blobfs", "--sock", v6BlobsSocket,
                "--bootstrap", ImageFixtures.UpstreamFile("bootstrap", "rafs-v6-2.2.boot"), "--localfs-dir", ImageFixtures.UpstreamFile("blobs"));
            WaitServing(erofs);
            WaitServing(v6);
            WaitServing(remote);
            WaitServing(erofsBlobs);
            WaitServing(v6Blobs);

            string guestScript = Path.Combine(work, "guest.sh");
            File.WriteAllText(guestScript,
                $"""
                export TAGS='nydus0 nydus1 nydus2' BLOBFS_TAGS='nydus3 nydus4' OUT='{exchange}'
                exec bash '{Path.Combine(TestVm.ScriptsDirectory, "guest-virtiofs.sh")}'

                """);
            (int exit, string console) = TestVm.Run(guestScript, exchange, VmTimeout,
                new Dictionary<string, string> { ["NYDUS_VM_VHOST_USER_FS"] = $"{erofsSocket} {v6Socket} {registrySocket} {erofsBlobsSocket} {v6BlobsSocket}" });
            DaemonOutput = $"--- nydusd (erofs)\n{erofs.Output}\n--- nydusd (v6)\n{v6.Output}\n--- nydusd (registry)\n{remote.Output}"
                + $"\n--- nydusd (erofs blobfs)\n{erofsBlobs.Output}\n--- nydusd (v6 blobfs)\n{v6Blobs.Output}";
            string sourceManifest = TreeBuilder.Run("bash", Path.Combine(TestVm.ScriptsDirectory, "tree-manifest.sh"), _tree.Root);
            return new GuestRun(exit, console, exchange, sourceManifest, new FileInfo(image).Length);
        }
        finally
        {
            // Killed (and waited for) whatever happened; each removes nothing itself when killed, so the sockets go here.
            erofs?.DisposeAsync().AsTask().GetAwaiter().GetResult();
            v6?.DisposeAsync().AsTask().GetAwaiter().GetResult();
            remote?.DisposeAsync().AsTask().GetAwaiter().GetResult();
            erofsBlobs?.DisposeAsync().AsTask().GetAwaiter().GetResult();
            v6Blobs?.DisposeAsync().AsTask().GetAwaiter().GetResult();
            registry?.Dispose();
            File.Delete(erofsSocket);
            File.Delete(v6Socket);
            File.Delete(registrySocket);
            File.Delete(erofsBlobsSocket);
            File.Delete(v6BlobsSocket);
        }
    }

    private static void WaitServing(NydusdProcess process)
    {
        DateTime deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (!process.Output.Contains("virtio-fs served on"))
        {
            if (process.HasExited || DateTime.UtcNow > deadline)
                throw new InvalidOperationException("nydusd virtiofs did not start: " + process.Output);
            Thread.Sleep(50);
        }
    }

    public void Dispose() => _tree?.Dispose();
}
