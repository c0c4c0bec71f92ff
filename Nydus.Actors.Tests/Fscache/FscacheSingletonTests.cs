using System.Text.Json;
using System.Text.Json.Nodes;
using Nydus.Actors.Api;
using Nydus.Actors.Fscache;
using Nydus.Actors.Fscache.Simulation;
using Nydus.Actors.Tests.Block;
using Nydus.Actors.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace Nydus.Actors.Tests.Fscache;

/// <summary>
/// The real nydusd (<c>singleton --fscache</c>) serving a simulated kernel (<see cref="SimulatedCachefilesKernel"/>,
/// reached through the test hook <c>NYDUS_TEST_CACHEFILES_SOCKET</c>; this machine has no cachefiles module): images
/// added with <c>PUT /api/v2/blobs</c>, opened and read by cookie as EROFS would, every byte read back from the
/// cache files compared with the upstream RAFS v6 fixture built without our readers (<see cref="UpstreamBlockImage"/>).
/// </summary>
public sealed class FscacheSingletonTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const string Repo = "fscache/image";
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(60);
    private readonly TempDir _dir = new("fscache");
    private SimulatedCachefilesKernel _kernel = null!;
    private NydusdProcess? _nydusd;
    private string ApiSocket => _dir.Combine("api.sock");

    private static byte[] Bootstrap => FscacheFixture.Bootstrap;

    private static byte[] DataObject => FscacheFixture.DataObject;

    public async Task InitializeAsync()
    {
        _kernel = SimulatedCachefilesKernel.Listen(_dir.Combine("cachefiles.sock"), _dir.Combine("kernel-cache"));
        _nydusd = NydusdProcess.StartIn(null, new Dictionary<string, string> { [SimulatedCachefilesDevice.SocketVariable] = _dir.Combine("cachefiles.sock") },
            "singleton", "--apisock", ApiSocket, "--id", "fscache-test", "--work-dir", _dir.Combine("work"),
            "--fscache", _dir.Combine("fscache"), "--fscache-tag", "nydus-test", "--fscache-threads", "4");
        await _nydusd.WaitForStateAsync(ApiSocket, "RUNNING", Wait);
        await _kernel.Bound.WaitAsync(Wait);
    }

    public async Task DisposeAsync()
    {
        if (_nydusd is not null)
        {
            output.WriteLine(_nydusd.Output);
            await _nydusd.DisposeAsync();
        }

        _kernel.Dispose();
        _dir.Dispose();
    }

    private string Dir(string name)
    {
        string path = _dir.Combine(name);
        Directory.CreateDirectory(path);
        return path;
    }

    private string LocalEntry(string domain, string id, string bootstrap) =>
        FscacheFixture.LocalEntry(domain, id, bootstrap, Dir("fscache-work"));

    private string RegistryEntry(string domain, string id, string bootstrap, string host, string workDir) => FscacheFixture.Entry(domain, id, bootstrap,
        RegistryBackend(host), new JsonObject { ["type"] = "filecache", ["filecache"] = new JsonObject { ["work_dir"] = Dir(workDir) } });

    private static JsonObject RegistryBackend(string host) => new()
    {
        ["type"] = "registry",
        ["registry"] = new JsonObject { ["host"] = host, ["repo"] = Repo, ["scheme"] = "http", ["timeout"] = 5, ["connect_timeout"] = 2, ["retry_limit"] = 0 },
    };

    /// <summary>The fixture's data blob pushed to <paramref name="registry"/> (under its digest), a bootstrap naming it
    /// by that digest, and the data object as the kernel must read it back.</summary>
    private (string Id, string Bootstrap, byte[] DataObject) PushFixture(RegistryServer registry, string bootstrapName)
    {
        string id = registry.Push(Repo, File.ReadAllBytes(Path.Combine(UpstreamBlockImage.BlobDir, UpstreamBlockImage.BlobId)));
        string bootstrap = _dir.Combine(bootstrapName);
        File.WriteAllBytes(bootstrap, Rename(Bootstrap, UpstreamBlockImage.BlobId, id));
        return (id, bootstrap, Rename(DataObject, UpstreamBlockImage.BlobId, id));
    }

    private Task AddAsync(string entry) => FscacheFixture.AddAsync(ApiSocket, entry, Wait);

    /// <summary>READs the whole object in <paramref name="piece"/>-byte requests, all in flight at once.</summary>
    private async Task<byte[]> ReadAllAsync(SimulatedObject obj, int piece)
    {
        var reads = new List<(long Offset, Task<string> Done)>();
        for (long at = 0; at < obj.Size; at += piece) reads.Add((at, _kernel.StartRead(obj, at, piece)));
        await Task.WhenAll(reads.Select(r => r.Done)).WaitAsync(Wait);
        var result = SimulatedCachefilesKernel.ReadBack(obj, 0, obj.Size);
        Assert.True(result.Filled, $"{obj.CookieKey}: the daemon left part of the object unwritten");
        return result.Bytes;
    }

    [Fact]
    public async Task Bootstrap_and_data_blob_objects_read_back_equal_the_image_localfs()
    {
        Assert.Equal([CachefilesCommands.Dir(_dir.Combine("fscache")), CachefilesCommands.Tag("nydus-test"), CachefilesCommands.BindOnDemand],
            _kernel.Commands);
        await AddAsync(LocalEntry("d1", "img1", UpstreamBlockImage.Bootstrap));

        var boot = await _kernel.OpenAsync("erofs,d1", "img1", Wait);
        Assert.Equal(Bootstrap.Length, boot.Size);
        var data = await _kernel.OpenAsync("erofs,d1", UpstreamBlockImage.BlobId, Wait);
        Assert.Equal(DataObject.Length, data.Size);

        Assert.Equal(Bootstrap, await ReadAllAsync(boot, 4096));
        byte[] blob = await ReadAllAsync(data, 4096);
        Assert.Equal(DataObject, blob);
        Assert.Equal(UpstreamBlockImage.LibRsMd5, UpstreamBlockImage.Md5(blob[..16931]));
        Assert.Equal(UpstreamBlockImage.SyncIoRsMd5, UpstreamBlockImage.Md5(blob[20480..(20480 + 13400)]));

        // Unknown cookies and domains are refused with -ENOENT, as upstream answers them.
        Assert.Equal(-2, (await _kernel.OpenAsync("erofs,d1", "no-such-blob", Wait)).Answer);
        Assert.Equal(-2, (await _kernel.OpenAsync("erofs,d9", "img1", Wait)).Answer);

        // Closed objects can be opened again (a new object id, a new fd).
        _kernel.Close(boot);
        _kernel.Close(data);
        var again = await _kernel.OpenAsync("erofs,d1", "img1", Wait);
        Assert.Equal(Bootstrap, await ReadAllAsync(again, 65536));
        Assert.Empty(_kernel.UnexpectedReplies);
        Assert.False(_nydusd!.HasExited);

        // The counters: 3 objects opened (the refused ones are not), 2 closed, every READ counted with its bytes.
        var counters = await FscacheCountersAsync();
        Assert.Equal(3, counters["opens"]);
        Assert.Equal(2, counters["closes"]);
        long reads = (Bootstrap.Length + 4095) / 4096 + (DataObject.Length + 4095) / 4096 + (Bootstrap.Length + 65535) / 65536;
        Assert.Equal(reads, counters["reads"]);
        Assert.Equal(2L * Bootstrap.Length + DataObject.Length, counters["read_bytes"]);
        Assert.Equal(0, counters["failed_reads"]);
        using var api = new ApiClient(ApiSocket, Wait);
        var (status, prometheus) = await api.SendAsync("GET", "/metrics");
        Assert.Equal(200, status);
        Assert.Contains($"\nnydus_fscache_reads_total {reads}\n", prometheus);
        Assert.Contains("# TYPE nydus_fscache_failed_reads_total counter", prometheus);
    }

    /// <summary>GET /api/v1/metrics/fscache: the service's counters.</summary>
    private async Task<Dictionary<string, long>> FscacheCountersAsync()
    {
        using var api = new ApiClient(ApiSocket, Wait);
        var (status, body) = await api.SendAsync("GET", "/api/v1/metrics/fscache");
        Assert.True(status == 200, $"GET /api/v1/metrics/fscache answered {status} {body}");
        return JsonSerializer.Deserialize<Dictionary<string, long>>(body)!;
    }

    /// <summary>
    /// The closest this machine gets to the real thing: the cache files the daemon filled are what cachefiles would
    /// hand to EROFS, so the kernel's own EROFS driver mounts them (bootstrap object as the image, data blob object as
    /// its device) and `cat` reads the image's files from them.
    /// </summary>
    [FuseFact]
    public async Task The_kernel_erofs_driver_mounts_the_filled_cache_files()
    {
        await AddAsync(LocalEntry("k", "img", UpstreamBlockImage.Bootstrap));
        var boot = await _kernel.OpenAsync("erofs,k", "img", Wait);
        var data = await _kernel.OpenAsync("erofs,k", UpstreamBlockImage.BlobId, Wait);
        await ReadAllAsync(boot, 8192);
        await ReadAllAsync(data, 8192);

        using var kernel = new KernelErofsMount(boot.CachePath, data.CachePath);
        Assert.Equal(UpstreamBlockImage.LibRsMd5, UpstreamBlockImage.Md5(File.ReadAllBytes(Path.Combine(kernel.MountPoint, "lib.rs"))));
        Assert.Equal(UpstreamBlockImage.SyncIoRsMd5, UpstreamBlockImage.Md5(File.ReadAllBytes(Path.Combine(kernel.MountPoint, "sync_io.rs"))));
    }

    [Fact]
    public async Task Many_objects_of_several_domains_are_served_at_once()
    {
        string[] domains = ["a", "b", "c", "d"];
        foreach (var domain in domains) await AddAsync(LocalEntry(domain, "img-" + domain, UpstreamBlockImage.Bootstrap));

        // Every OPEN in flight together, then every READ of every object in flight together.
        var opens = domains.SelectMany(d => new[] { _kernel.StartOpen("erofs," + d, "img-" + d), _kernel.StartOpen("erofs," + d, UpstreamBlockImage.BlobId) }).ToList();
        await Task.WhenAll(opens.Select(o => o.Answer)).WaitAsync(Wait);
        var reads = opens.Select(o => ReadAllAsync(o.Object, 1024)).ToList();
        var contents = await Task.WhenAll(reads).WaitAsync(Wait);
        for (int i = 0; i < opens.Count; i++)
            Assert.Equal(i % 2 == 0 ? Bootstrap : DataObject, contents[i]);
        Assert.Equal(0, _kernel.InFlight);
        Assert.Empty(_kernel.UnexpectedReplies);
    }

    [Fact]
    public async Task Registry_blobs_are_fetched_into_the_cache_file_and_a_down_registry_fails_only_its_reads()
    {
        using var registry = RegistryServer.Start();
        var (id, bootstrap, expectedData) = PushFixture(registry, "registry.boot");
        await AddAsync(RegistryEntry("reg", "img", bootstrap, registry.Host, "blobcache-1"));
        await AddAsync(RegistryEntry("down", "img", bootstrap, registry.Host, "blobcache-2"));
        await AddAsync(LocalEntry("local", "img", UpstreamBlockImage.Bootstrap));

        var data = await _kernel.OpenAsync("erofs,reg", id, Wait);
        Assert.Equal(expectedData, await ReadAllAsync(data, 8192));

        // The second domain's blob cache is cold; with the registry gone its READs complete with nothing written
        // (the kernel's reader gets EIO), and another domain's objects are served meanwhile.
        var cold = await _kernel.OpenAsync("erofs,down", id, Wait);
        Assert.Equal(expectedData.Length, cold.Size);
        registry.Stop();
        var failing = Enumerable.Range(0, 8).Select(i => _kernel.StartRead(cold, i * 4096, 4096)).ToList();
        var local = await _kernel.OpenAsync("erofs,local", UpstreamBlockImage.BlobId, Wait);
        Assert.Equal(DataObject, await ReadAllAsync(local, 4096));
        await Task.WhenAll(failing).WaitAsync(Wait);
        var after = SimulatedCachefilesKernel.ReadBack(cold, 0, cold.Size);
        Assert.False(after.Filled, "the daemon wrote data it could not have fetched");
        Assert.All(after.Bytes, b => Assert.Equal(0, b));
        // The warm domain is still served from its blob cache with the registry down.
        var warm = await _kernel.OpenAsync("erofs,reg", id, Wait);
        Assert.Equal(expectedData, await ReadAllAsync(warm, 36864));
        Assert.Empty(_kernel.UnexpectedReplies);
        Assert.Equal(8, (await FscacheCountersAsync())["failed_reads"]);
    }

    /// <summary>
    /// A registry that takes requests and never answers (a fake one that holds every connection until the test lets
    /// go, with the entry's registry timeout far longer than the test): the daemon runs 4 workers, so at most 2 of them
    /// wait in the hung object's backend reads and its other READs queue on the object, while another domain's object
    /// is opened and read in full meanwhile. When the backend gives up (the connections close with no answer) every
    /// READ of the hung object completes with nothing written (EIO to the kernel's reader), queued ones included.
    /// </summary>
    [Fact]
    public async Task A_hanging_registry_holds_at_most_half_the_workers_and_its_READs_fail_when_it_gives_up()
    {
        byte[] blob = File.ReadAllBytes(Path.Combine(UpstreamBlockImage.BlobDir, UpstreamBlockImage.BlobId));
        var letGo = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        int hanging = 0, held = 0;
        using var registry = new RegistryFakeServer(async (request, stream, cancellation) =>
        {
            if (Volatile.Read(ref hanging) == 1)
            {
                Interlocked.Increment(ref held);
                // Closed with no answer once let go (at once for requests that come after).
                await letGo.Task.WaitAsync(cancellation);
                return;
            }
            if (request.Method == "HEAD")
            {
                await stream.WriteAsync(System.Text.Encoding.ASCII.GetBytes(
                    $"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: {blob.Length}\r\n\r\n"), cancellation);
                return;
            }
            await RegistryFakeServer.RespondWithRangeAsync(stream, request, blob);
        });
        var backend = RegistryBackend(registry.Host);
        backend["registry"]!["timeout"] = 600;
        await AddAsync(FscacheFixture.Entry("hung", "img", UpstreamBlockImage.Bootstrap, backend,
            new JsonObject { ["type"] = "filecache", ["filecache"] = new JsonObject { ["work_dir"] = Dir("blobcache-hung") } }));
        await AddAsync(LocalEntry("local", "img", UpstreamBlockImage.Bootstrap));
        var hung = await _kernel.OpenAsync("erofs,hung", UpstreamBlockImage.BlobId, Wait);

        Volatile.Write(ref hanging, 1);
        var failing = Enumerable.Range(0, 8).Select(i => _kernel.StartRead(hung, i * 4096, 4096)).ToList();
        for (var deadline = DateTime.UtcNow + Wait; Volatile.Read(ref held) == 0; await Task.Delay(50))
            Assert.True(DateTime.UtcNow < deadline, "no backend request of the hung object reached the registry");

        // Two workers wait on the registry; the other two serve the other domain, its OPEN included.
        var local = await _kernel.OpenAsync("erofs,local", UpstreamBlockImage.BlobId, Wait);
        Assert.Equal(DataObject, await ReadAllAsync(local, 4096));
        Assert.All(failing, read => Assert.False(read.IsCompleted, "a READ of the hung object was answered while its registry held it"));
        Assert.Equal(6, (await FscacheCountersAsync())["queued_reads"]);

        letGo.SetResult();
        await Task.WhenAll(failing).WaitAsync(Wait);
        var after = SimulatedCachefilesKernel.ReadBack(hung, 0, hung.Size);
        Assert.All(after.Bytes, b => Assert.Equal(0, b));
        Assert.Empty(_kernel.UnexpectedReplies);
        Assert.Equal(8, (await FscacheCountersAsync())["failed_reads"]);
    }

    /// <summary>
    /// A chunked <c>mkfs.erofs --chunksize --blobdev</c> image: its device slot has no tag, so the kernel's OPEN names
    /// the data device by the mount's <c>device=</c> option, which the entry names too (<c>devices</c>, or a localfs
    /// <c>blob_file</c>'s file name). Both objects read back byte for byte, over localfs and over a real registry,
    /// and the kernel's EROFS driver mounts the filled cache files with every file of the source tree intact.
    /// </summary>
    [FuseFact]
    public async Task Chunked_mkfs_erofs_images_are_served_by_the_device_name_with_localfs_and_registry()
    {
        string source = Dir("chunked-src");
        var files = new Dictionary<string, byte[]>
        {
            ["big.bin"] = Seeded(1, 3 * 4096 + 1234),
            ["dir/one-chunk.bin"] = Seeded(2, 4096),
            ["dir/small.txt"] = System.Text.Encoding.ASCII.GetBytes("chunked mkfs.erofs image over fscache\n"),
            ["dir/sub/mib.bin"] = Seeded(3, 1 << 20),
        };
        foreach (var (name, bytes) in files)
        {
            Directory.CreateDirectory(Path.GetDirectoryName(Path.Combine(source, name))!);
            File.WriteAllBytes(Path.Combine(source, name), bytes);
        }
        string meta = _dir.Combine("chunked.erofs"), blob = _dir.Combine("chunked.blob");
        TreeBuilder.Run("mkfs.erofs", "--quiet", "--chunksize=4096", "--blobdev=" + blob, meta, source);
        byte[] blobBytes = File.ReadAllBytes(blob);

        // Without a name for the untagged device the entry is refused, naming the field.
        using (var api = new ApiClient(ApiSocket, Wait))
        {
            var (status, body) = await api.SendAsync("PUT", "/api/v2/blobs", FscacheFixture.Entry("plain", "img", meta,
                new JsonObject { ["type"] = "localfs", ["localfs"] = new JsonObject { ["dir"] = _dir.Path } },
                new JsonObject { ["type"] = "fscache", ["fscache"] = new JsonObject { ["work_dir"] = Dir("fscache-work") } }));
            Assert.True(status == 400 && body.Contains("'devices'"), $"answered {status} {body}");
        }

        // localfs blob_file: the device is named by the file's name.
        await AddAsync(FscacheFixture.Entry("plain", "img", meta,
            new JsonObject { ["type"] = "localfs", ["localfs"] = new JsonObject { ["blob_file"] = blob } },
            new JsonObject { ["type"] = "fscache", ["fscache"] = new JsonObject { ["work_dir"] = Dir("fscache-work") } }));
        await ReadBothAndMount("erofs,plain", "img", "chunked.blob");

        // A registry: the blob under its digest, which the entry's devices and the mount's device= name.
        using var registry = RegistryServer.Start();
        string id = registry.Push(Repo, blobBytes);
        await AddAsync(FscacheFixture.Entry("plain-reg", "img", meta, RegistryBackend(registry.Host),
            new JsonObject { ["type"] = "filecache", ["filecache"] = new JsonObject { ["work_dir"] = Dir("blobcache-plain") } }, [id]));
        await ReadBothAndMount("erofs,plain-reg", "img", id);
        Assert.Empty(_kernel.UnexpectedReplies);

        async Task ReadBothAndMount(string volume, string bootstrapId, string device)
        {
            var boot = await _kernel.OpenAsync(volume, bootstrapId, Wait);
            Assert.Equal(File.ReadAllBytes(meta), await ReadAllAsync(boot, 4096));
            var data = await _kernel.OpenAsync(volume, device, Wait);
            Assert.True(data.Size >= blobBytes.Length && data.Size % 4096 == 0, $"data object of {data.Size} bytes for a {blobBytes.Length}-byte blob");
            byte[] read = await ReadAllAsync(data, 16384);
            Assert.Equal(blobBytes, read[..blobBytes.Length]);
            Assert.All(read[blobBytes.Length..], b => Assert.Equal(0, b));

            using var kernel = new KernelErofsMount(boot.CachePath, data.CachePath);
            foreach (var (name, bytes) in files)
                Assert.Equal(bytes, File.ReadAllBytes(Path.Combine(kernel.MountPoint, name)));
        }
    }

    /// <summary>
    /// <c>DELETE /api/v2/blobs?blob_id=B</c> alone is upstream's cull: the blob's cache file in every EROFS volume is
    /// asked about with <c>inuse</c> and deleted with <c>cull</c>, written from the cookie's directory (the kernel
    /// resolves the name in the writer's working directory) without moving the daemon's own working directory.
    /// A file the kernel holds open is kept (409), a blob with no cache file is 404.
    /// </summary>
    [Fact]
    public async Task Cull_deletes_the_cache_files_of_a_blob_the_kernel_no_longer_uses()
    {
        string cwdBefore = Cwd(_nydusd!.Pid);
        await AddAsync(LocalEntry("c1", "img", UpstreamBlockImage.Bootstrap));
        await AddAsync(LocalEntry("c2", "img", UpstreamBlockImage.Bootstrap));
        var one = await _kernel.OpenAsync("erofs,c1", UpstreamBlockImage.BlobId, Wait);
        var two = await _kernel.OpenAsync("erofs,c2", UpstreamBlockImage.BlobId, Wait);
        await ReadAllAsync(one, 8192);
        await ReadAllAsync(two, 8192);
        // Where cachefiles keeps them: <dir>/cache/I<volume>/@<hash>/D<cookie>.
        Assert.Equal(CachefilesLayout.CookiePath(_dir.Combine("fscache"), "erofs,c1", UpstreamBlockImage.BlobId), one.CachePath);
        Assert.StartsWith(_dir.Combine("fscache", "cache", "Ierofs,c2", "@"), two.CachePath);

        string cull = "/api/v2/blobs?blob_id=" + UpstreamBlockImage.BlobId;
        using var api = new ApiClient(ApiSocket, Wait);
        var (status, body) = await api.SendAsync("DELETE", cull);
        Assert.True(status == 409 && body.Contains("in use"), $"answered {status} {body}");
        Assert.True(File.Exists(one.CachePath) && File.Exists(two.CachePath));

        // One volume's object closed: its file goes, the other is still in use.
        _kernel.Close(one);
        (status, body) = await api.SendAsync("DELETE", cull);
        Assert.True(status == 409 && body.Contains("erofs,c2") && body.Contains("culled from erofs,c1"), $"answered {status} {body}");
        Assert.False(File.Exists(one.CachePath));
        Assert.True(File.Exists(two.CachePath));

        _kernel.Close(two);
        (status, body) = await api.SendAsync("DELETE", cull);
        Assert.True(status == 204, $"answered {status} {body}");
        Assert.False(File.Exists(two.CachePath));
        (status, body) = await api.SendAsync("DELETE", cull);
        Assert.True(status == 404 && body.Contains("no cache file"), $"answered {status} {body}");
        (status, _) = await api.SendAsync("DELETE", "/api/v2/blobs?blob_id=..");
        Assert.Equal(400, status);

        // The commands were names in the cookie's directory; every one was the kernel's to judge.
        Assert.Contains(("cull D" + UpstreamBlockImage.BlobId, Nydus.Actors.Interop.Errno.Success), _kernel.FileCommands);
        Assert.Contains(("inuse D" + UpstreamBlockImage.BlobId, Nydus.Actors.Interop.Errno.EBUSY), _kernel.FileCommands);
        Assert.Equal(cwdBefore, Cwd(_nydusd.Pid));
        // The entries are the manager's, not the cache's: still listed, and the blob is served again on a new OPEN.
        (status, body) = await api.SendAsync("GET", "/api/v2/blobs?domain_id=c1&blob_id=" + UpstreamBlockImage.BlobId);
        Assert.True(status == 200, $"answered {status} {body}");
        var again = await _kernel.OpenAsync("erofs,c1", UpstreamBlockImage.BlobId, Wait);
        Assert.Equal(DataObject, await ReadAllAsync(again, 8192));
        Assert.Empty(_kernel.UnexpectedReplies);
    }

    /// <summary>
    /// An entry with <c>cache.prefetch</c> enabled: on OPEN of a data blob the daemon fetches the whole object into
    /// its cache file (upstream's fscache prefetch); with the registry stopped afterwards, every READ is answered from
    /// the cache file, none fails.
    /// </summary>
    [Fact]
    public async Task Prefetch_fills_the_cache_file_so_READs_need_no_backend()
    {
        using var registry = RegistryServer.Start();
        var (id, bootstrap, expected) = PushFixture(registry, "prefetch.boot");
        await AddAsync(FscacheFixture.Entry("pre", "img", bootstrap, RegistryBackend(registry.Host),
            new JsonObject
            {
                ["type"] = "fscache",
                ["fscache"] = new JsonObject { ["work_dir"] = Dir("fscache-work") },
                ["prefetch"] = new JsonObject { ["enable"] = true, ["threads"] = 1, ["batch_size"] = 4096 },
            }));

        var data = await _kernel.OpenAsync("erofs,pre", id, Wait);
        // No READ sent: the prefetch alone fills the file (bounded wait).
        var deadline = DateTime.UtcNow + Wait;
        while (!SimulatedCachefilesKernel.ReadBack(data, 0, data.Size).Filled)
        {
            Assert.True(DateTime.UtcNow < deadline, "the prefetch did not fill the cache file in time");
            await Task.Delay(50);
        }
        registry.Stop();

        Assert.Equal(expected, await ReadAllAsync(data, 4096));
        var counters = await FscacheCountersAsync();
        Assert.Equal(0, counters["failed_reads"]);
        Assert.Equal(data.Size / 4096, counters["reads_from_cache_file"]);
        Assert.Equal(data.Size, counters["prefetched_bytes"]);
        Assert.Empty(_kernel.UnexpectedReplies);
    }

    private static string Cwd(int pid) => new DirectoryInfo($"/proc/{pid}/cwd").ResolveLinkTarget(false)!.FullName;

    private static byte[] Seeded(int seed, int length)
    {
        var bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    [Fact]
    public async Task Malformed_requests_are_dropped_or_refused_and_the_service_goes_on()
    {
        await AddAsync(LocalEntry("d1", "img1", UpstreamBlockImage.Bootstrap));
        var boot = await _kernel.OpenAsync("erofs,d1", "img1", Wait);

        _kernel.SendRaw(new byte[7]); // shorter than a header
        _kernel.SendRaw([1, 0, 0, 0, 9, 0, 0, 0, 16, 0, 0, 0, 1, 0, 0, 0]); // unknown opcode
        uint readId = _kernel.NextMessageId();
        _kernel.SendRaw(CachefilesMessage.EncodeRead(readId, 999, 0, 4096)); // no such object

        // An OPEN whose keys overrun the message: refused with -EINVAL, its fd closed.
        uint openId = _kernel.NextMessageId();
        byte[] open = CachefilesMessage.EncodeOpen(openId, 77, "erofs,d1", "img1", -1);
        open[20] = 200; // cookie_key_size
        var refused = _kernel.Expect(openId);
        using (var fd = File.OpenHandle(_dir.Combine("stray"), FileMode.Create, FileAccess.ReadWrite))
            _kernel.SendRaw(open, fd);
        Assert.Equal("copen " + openId + ",-22", await refused.WaitAsync(Wait));

        // A READ past the end fills what lies inside the object and completes.
        var tail = await _kernel.ReadAsync(boot, Bootstrap.Length - 4096, 16384, Wait);
        Assert.True(tail.Filled);
        Assert.Equal(Bootstrap[^4096..], tail.Bytes);

        // Offset and length whose sum wraps 64 bits: nothing lies inside, completed at once, nothing written.
        uint hugeId = _kernel.NextMessageId();
        var huge = _kernel.Expect(hugeId);
        _kernel.SendRaw(CachefilesMessage.EncodeRead(hugeId, boot.ObjectId, ulong.MaxValue - 10, 100));
        Assert.Equal($"cread {hugeId},{boot.ObjectId}", await huge.WaitAsync(Wait));

        Assert.Equal(Bootstrap, await ReadAllAsync(boot, 4096));
        Assert.Empty(_kernel.UnexpectedReplies);
        Assert.False(_nydusd!.HasExited);
        // The daemon logs through Akka's logger and its stdout is read by this process: the line comes a moment later.
        await _nydusd.WaitForOutputAsync("dropped a malformed request", Wait);
        // Three malformed messages; the READ for an object never opened is well formed, counted apart.
        var counters = await FscacheCountersAsync();
        Assert.Equal(3, counters["malformed_requests"]);
        Assert.Equal(1, counters["unknown_object_reads"]);
    }

    internal static byte[] Rename(byte[] bytes, string from, string to)
    {
        byte[] copy = (byte[])bytes.Clone();
        byte[] old = System.Text.Encoding.ASCII.GetBytes(from), replacement = System.Text.Encoding.ASCII.GetBytes(to);
        for (int at = copy.AsSpan().IndexOf(old); at >= 0; at = copy.AsSpan().IndexOf(old)) replacement.CopyTo(copy, at);
        return copy;
    }
}
