using System.Diagnostics;
using System.Net;
using System.Text.Json;
using Nydus.Actors.Block;
using Nydus.Actors.Block.Nbd;
using Nydus.Actors.Rafs;
using Nydus.Actors.Storage;
using Nydus.Actors.Storage.Backends;
using Nydus.Actors.Tests.Support;
using Xunit;

namespace Nydus.Actors.Tests.Block;

/// <summary>
/// The NBD server with libnbd's own tools (nbdinfo, nbdcopy) as clients over a Unix socket and TCP, and with a raw
/// client for the requests those tools never send. The export is the upstream RAFS v6 fixture, compared with the
/// device built independently in <see cref="UpstreamBlockImage"/>.
/// </summary>
public sealed class NbdServerTests : IDisposable
{
    private readonly TempDir _dir = new("nbd");
    private readonly NbdExportTable _exports = new();
    private readonly NbdServer _server;
    private readonly IPEndPoint _tcp;

    public NbdServerTests()
    {
        _exports.TryAdd(new NbdExport("fixture", "upstream rafs-v6-2.2.boot", OpenFixture()));
        _exports.TryAdd(new NbdExport("second", "", OpenFixture()));
        _server = new NbdServer(_exports, new NbdServerOptions { HandshakeTimeout = TimeSpan.FromSeconds(5) });
        _server.ListenUnix(Socket);
        _tcp = _server.ListenTcp(new IPEndPoint(IPAddress.Loopback, 0));
    }

    private string Socket => _dir.Combine("nbd.sock");

    private string UnixUri(string name) => $"nbd+unix:///{name}?socket={Socket}";

    private static BlockAddressSpace OpenFixture() =>
        BlockImages.OpenFromCommandLine(UpstreamBlockImage.Bootstrap, null, UpstreamBlockImage.BlobDir);

    [Fact]
    public void Nbdinfo_lists_and_describes_the_exports()
    {
        using JsonDocument list = JsonDocument.Parse(TreeBuilder.Run("nbdinfo", "--list", "--json", UnixUri("")));
        string[] names = list.RootElement.GetProperty("exports").EnumerateArray()
            .Select(e => e.GetProperty("export-name").GetString()!).Order(StringComparer.Ordinal).ToArray();
        Assert.Equal(["fixture", "second"], names);

        using JsonDocument info = JsonDocument.Parse(TreeBuilder.Run("nbdinfo", "--json", UnixUri("fixture")));
        JsonElement export = info.RootElement.GetProperty("exports")[0];
        Assert.Equal(UpstreamBlockImage.Blocks * 4096, export.GetProperty("export-size").GetInt64());
        Assert.True(export.GetProperty("is_read_only").GetBoolean());
        Assert.True(export.GetProperty("can_multi_conn").GetBoolean());
        Assert.Equal(4096, export.GetProperty("block_size_preferred").GetInt32());
        Assert.Equal("upstream rafs-v6-2.2.boot", export.GetProperty("description").GetString());

        // base:allocation: the metadata blob, the alignment hole, the data blob.
        string map = TreeBuilder.Run("nbdinfo", "--map", UnixUri("fixture"));
        var extents = map.Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            .Select(f => (long.Parse(f[0]), long.Parse(f[1]), int.Parse(f[2])))
            .ToArray();
        Assert.Equal([(0L, 5L * 4096, 0), (5L * 4096, 507L * 4096, 3), (512L * 4096, 9L * 4096, 0)], extents);
    }

    [Fact]
    public void Nbdcopy_over_unix_and_tcp_equals_the_device()
    {
        string viaUnix = _dir.Combine("unix.img"), viaTcp = _dir.Combine("tcp.img");
        TreeBuilder.Run("nbdcopy", UnixUri("fixture"), viaUnix);
        TreeBuilder.Run("nbdcopy", $"nbd://127.0.0.1:{_tcp.Port}/second", viaTcp);
        Assert.True(UpstreamBlockImage.ExpectedDevice.AsSpan().SequenceEqual(File.ReadAllBytes(viaUnix)), "nbdcopy over the Unix socket differs");
        Assert.True(UpstreamBlockImage.ExpectedDevice.AsSpan().SequenceEqual(File.ReadAllBytes(viaTcp)), "nbdcopy over TCP differs");
    }

    [Fact]
    public void Bad_requests_get_the_protocols_errors_and_the_connection_stays_in_step()
    {
        byte[] expected = UpstreamBlockImage.ExpectedDevice;
        using var client = new NbdTestClient(Socket);
        client.Greet();
        Assert.Equal(0x8000_0006u, client.Go("no-such-export"));
        Assert.Equal(1u, client.Go("fixture"));

        client.SendRequest(0, 1, (ulong)expected.Length - 4096, 8192);          // past the end
        Assert.Equal((22u, 1ul), client.ReceiveSimpleReply());
        client.SendRequest(0, 2, 0, 0);                                         // empty read
        Assert.Equal((22u, 2ul), client.ReceiveSimpleReply());
        client.SendRequest(0, 3, ulong.MaxValue - 10, 4096);                    // offset overflow
        Assert.Equal((22u, 3ul), client.ReceiveSimpleReply());
        client.SendRequest(1, 4, 0, 4096, payload: new byte[4096]);             // write on a read-only export
        Assert.Equal((1u, 4ul), client.ReceiveSimpleReply());
        client.SendRequest(4, 5, 0, 4096);                                      // trim
        Assert.Equal((1u, 5ul), client.ReceiveSimpleReply());
        client.SendRequest(42, 6, 0, 4096);                                     // unknown command
        Assert.Equal((22u, 6ul), client.ReceiveSimpleReply());
        client.SendRequest(7, 7, 0, 4096);                                      // block status without a context
        Assert.Equal((22u, 7ul), client.ReceiveSimpleReply());

        // Still in step: an unaligned read across the blob start returns the right bytes.
        long at = 512 * 4096 - 5;
        client.SendRequest(0, 8, (ulong)at, 11);
        Assert.Equal((0u, 8ul), client.ReceiveSimpleReply());
        Assert.Equal(expected.AsSpan((int)at, 11).ToArray(), client.Receive(11));

        client.SendRequest(2, 9, 0, 0);                                         // disconnect
        Assert.True(client.IsClosedByServer());
    }

    [Fact]
    public void Structured_replies_send_holes_as_holes_and_block_status_describes_them()
    {
        byte[] expected = UpstreamBlockImage.ExpectedDevice;
        using var client = new NbdTestClient(Socket);
        client.Greet();
        client.SendOption(NbdTestClient.OptStructuredReply, []);
        Assert.Equal(1u, client.ReceiveOptionReply().Type);
        byte[] name = "fixture"u8.ToArray(), context = "base:allocation"u8.ToArray();
        client.SendOption(NbdTestClient.OptSetMetaContext,
            [.. NbdTestClient.BigEndian32((uint)name.Length), .. name, .. NbdTestClient.BigEndian32(1),
             .. NbdTestClient.BigEndian32((uint)context.Length), .. context]);
        Assert.Equal(4u, client.ReceiveOptionReply().Type);
        Assert.Equal(1u, client.ReceiveOptionReply().Type);
        Assert.Equal(1u, client.Go("fixture"));

        // A read over metadata, hole and data: DATA, HOLE, DATA chunks; DONE on the last.
        long start = 4 * 4096, length = 510 * 4096;
        client.SendRequest(0, 11, (ulong)start, (uint)length);
        var assembled = new byte[length];
        var types = new List<ushort>();
        while (true)
        {
            (ushort flags, ushort type, ulong cookie, byte[] payload) = client.ReceiveChunk();
            Assert.Equal(11ul, cookie);
            types.Add(type);
            long offset = (long)System.Buffers.Binary.BinaryPrimitives.ReadUInt64BigEndian(payload);
            if (type == 1) payload.AsSpan(8).CopyTo(assembled.AsSpan((int)(offset - start)));
            if ((flags & 1) != 0) break;
        }

        Assert.Equal([(ushort)1, (ushort)2, (ushort)1], types);
        Assert.True(expected.AsSpan((int)start, (int)length).SequenceEqual(assembled));

        client.SendRequest(7, 12, 0, (uint)expected.Length);
        (ushort doneFlags, ushort statusType, _, byte[] status) = client.ReceiveChunk();
        Assert.Equal((1, 5), (doneFlags, statusType));
        var descriptors = Enumerable.Range(0, (status.Length - 4) / 8)
            .Select(i => (System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(status.AsSpan(4 + 8 * i)),
                          System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(status.AsSpan(8 + 8 * i))))
            .ToArray();
        Assert.Equal([(5u * 4096, 0u), (507u * 4096, 3u), (9u * 4096, 0u)], descriptors);

        // Errors are structured too.
        client.SendRequest(0, 13, (ulong)expected.Length, 1);
        (ushort errorFlags, ushort errorType, ulong errorCookie, byte[] error) = client.ReceiveChunk();
        Assert.Equal((1, 0x8001, 13ul), (errorFlags, errorType, errorCookie));
        Assert.Equal(22u, System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(error));
    }

    [Fact]
    public void Protocol_violations_end_only_that_connection()
    {
        using (var badOption = new NbdTestClient(Socket))
        {
            badOption.Greet();
            badOption.Send(new byte[16]);                                       // no IHAVEOPT magic
            Assert.True(badOption.IsClosedByServer());
        }

        using (var badRequest = new NbdTestClient(Socket))
        {
            badRequest.Greet();
            Assert.Equal(1u, badRequest.Go("fixture"));
            badRequest.Send(new byte[28]);                                      // no request magic
            Assert.True(badRequest.IsClosedByServer());
        }

        using (var midRequest = new NbdTestClient(Socket))
        {
            midRequest.Greet();
            Assert.Equal(1u, midRequest.Go("fixture"));
            midRequest.Send(new byte[] { 0x25, 0x60, 0x95, 0x13, 0, 0, 0, 0, 1 }); // a third of a request, then gone
        }

        using (var silent = new NbdTestClient(Socket))
        {
            // Never answers the greeting: the handshake timeout (5 s here) ends it.
            silent.Receive(18);
            Assert.True(silent.IsClosedByServer());
        }

        WaitFor(() => _server.ConnectionCount == 0, "connections of the departed clients to end");
        string copy = _dir.Combine("after.img");
        TreeBuilder.Run("nbdcopy", UnixUri("fixture"), copy);
        Assert.True(UpstreamBlockImage.ExpectedDevice.AsSpan().SequenceEqual(File.ReadAllBytes(copy)));
    }

    [Fact]
    public void A_thousand_connections_are_served_at_once()
    {
        byte[] expected = UpstreamBlockImage.ExpectedDevice;
        var clients = new List<NbdTestClient>();
        try
        {
            for (int i = 0; i < 1000; i++)
            {
                var client = new NbdTestClient(Socket);
                clients.Add(client);
                client.Greet();
                Assert.Equal(1u, client.Go(i % 2 == 0 ? "fixture" : "second"));
            }

            Assert.Equal(1000, _server.ConnectionCount);
            var random = new Random(5);
            for (int i = 0; i < clients.Count; i++)
            {
                long offset = random.NextInt64(expected.Length - 4096);
                clients[i].SendRequest(0, (ulong)i, (ulong)offset, 4096);
            }

            random = new Random(5);
            for (int i = 0; i < clients.Count; i++)
            {
                long offset = random.NextInt64(expected.Length - 4096);
                Assert.Equal((0u, (ulong)i), clients[i].ReceiveSimpleReply());
                Assert.True(expected.AsSpan((int)offset, 4096).SequenceEqual(clients[i].Receive(4096)), $"client {i} read wrong bytes");
            }
        }
        finally
        {
            foreach (var client in clients) client.Dispose();
        }

        WaitFor(() => _server.ConnectionCount == 0, "1000 connections to end");
    }

    [Fact]
    public void Reads_of_one_connection_run_at_once_and_answer_in_any_order_with_their_cookies()
    {
        // The data blob's backend holds every read until the gate opens: a server serving one request at a time
        // would answer the data read (after the gate's 30 s, with EIO) before the metadata read behind it.
        byte[] expected = UpstreamBlockImage.ExpectedDevice;
        // The export's device owns the backend: it is disposed with the device.
        var gated = new GatedBackend(LocalFsBackend.ForDirectory(UpstreamBlockImage.BlobDir));
        using var exports = new NbdExportTable();
        exports.TryAdd(new NbdExport("gated", "", BlockAddressSpace.Open(UpstreamBlockImage.Bootstrap, new BlobSource(gated), new RafsOpenOptions(), gated)));
        string socket = _dir.Combine("gated.sock");
        using var server = new NbdServer(exports, new NbdServerOptions { Threads = 4 });
        server.ListenUnix(socket);
        gated.Close();

        using var client = new NbdTestClient(socket);
        client.Greet();
        Assert.Equal(1u, client.Go("gated"));
        const long data = 512 * 4096;
        client.SendRequest(0, 1, data, 8192);
        client.SendRequest(0, 2, 100, 3000);
        WaitFor(() => gated.Waiting == 1, "the data read to reach the backend");
        Assert.Equal((0u, 2ul), client.ReceiveSimpleReply());
        Assert.Equal(expected.AsSpan(100, 3000).ToArray(), client.Receive(3000));

        gated.Open();
        Assert.Equal((0u, 1ul), client.ReceiveSimpleReply());
        Assert.Equal(expected.AsSpan((int)data, 8192).ToArray(), client.Receive(8192));

        // Pipelined: 64 reads sent before any reply is read, each answered once with its own bytes.
        var random = new Random(7);
        var requests = new Dictionary<ulong, (long Offset, int Length)>();
        for (ulong cookie = 100; cookie < 164; cookie++)
        {
            int length = random.Next(1, 64 << 10);
            long offset = random.NextInt64(expected.Length - length);
            requests[cookie] = (offset, length);
            client.SendRequest(0, cookie, (ulong)offset, (uint)length);
        }

        while (requests.Count > 0)
        {
            (uint error, ulong cookie) = client.ReceiveSimpleReply();
            Assert.Equal(0u, error);
            Assert.True(requests.Remove(cookie, out var request), $"reply for unknown or repeated cookie {cookie}");
            Assert.True(expected.AsSpan((int)request.Offset, request.Length).SequenceEqual(client.Receive(request.Length)), $"cookie {cookie}: wrong bytes");
        }
    }

    [Fact]
    public void A_client_leaving_with_reads_in_flight_ends_only_its_connection()
    {
        // The export's device owns the backend: it is disposed with the device.
        var gated = new GatedBackend(LocalFsBackend.ForDirectory(UpstreamBlockImage.BlobDir));
        using var exports = new NbdExportTable();
        exports.TryAdd(new NbdExport("gated", "", BlockAddressSpace.Open(UpstreamBlockImage.Bootstrap, new BlobSource(gated), new RafsOpenOptions(), gated)));
        string socket = _dir.Combine("leaving.sock");
        using var server = new NbdServer(exports, new NbdServerOptions { Threads = 4 });
        server.ListenUnix(socket);
        gated.Close();

        using (var leaving = new NbdTestClient(socket))
        {
            leaving.Greet();
            Assert.Equal(1u, leaving.Go("gated"));
            for (ulong cookie = 1; cookie <= 6; cookie++) leaving.SendRequest(0, cookie, 512 * 4096, 4096);
            WaitFor(() => gated.Waiting == 4, "four reads (the thread limit) to wait in the backend");
        }

        // The export is removed while its reads are still running: its device must outlive them.
        Assert.True(exports.Remove("gated"));
        Assert.Equal(1, server.ConnectionCount);
        gated.Open();
        WaitFor(() => server.ConnectionCount == 0, "the departed client's connection to end");
        Assert.True(gated.Disposed, "the removed export's device (and its backend) was not disposed after its last read");

        // The shared server keeps serving everyone else.
        string copy = _dir.Combine("others.img");
        TreeBuilder.Run("nbdcopy", UnixUri("fixture"), copy);
        Assert.True(UpstreamBlockImage.ExpectedDevice.AsSpan().SequenceEqual(File.ReadAllBytes(copy)));
    }

    /// <summary>A backend whose reads wait, once closed, until it is opened again (bounded: 30 s, then an error).</summary>
    private sealed class GatedBackend(IBlobBackend inner) : IBlobBackend
    {
        private readonly ManualResetEventSlim _open = new(true);
        private int _waiting;

        public int Waiting => Volatile.Read(ref _waiting);

        public bool Disposed { get; private set; }

        public void Close() => _open.Reset();

        public void Open() => _open.Set();

        public long GetBlobSize(string blobId) => inner.GetBlobSize(blobId);

        public void Read(string blobId, long offset, Span<byte> destination)
        {
            Interlocked.Increment(ref _waiting);
            try
            {
                if (!_open.Wait(TimeSpan.FromSeconds(30))) throw new StorageException(StorageErrorKind.BackendUnavailable, "gate never opened");
            }
            finally
            {
                Interlocked.Decrement(ref _waiting);
            }

            inner.Read(blobId, offset, destination);
        }

        public void Dispose()
        {
            Disposed = true;
            _open.Set();
            inner.Dispose();
        }
    }

    [Fact]
    public void A_removed_export_keeps_serving_its_open_connection_then_is_gone()
    {
        using var client = new NbdTestClient(Socket);
        client.Greet();
        Assert.Equal(1u, client.Go("second"));
        Assert.True(_exports.Remove("second"));
        client.SendRequest(0, 1, 0, 4096);
        Assert.Equal((0u, 1ul), client.ReceiveSimpleReply());
        Assert.Equal(UpstreamBlockImage.ExpectedDevice.AsSpan(0, 4096).ToArray(), client.Receive(4096));

        using var late = new NbdTestClient(Socket);
        late.Greet();
        Assert.Equal(0x8000_0006u, late.Go("second"));
    }

    [Fact]
    public void Export_name_abort_and_starttls_follow_the_protocol()
    {
        byte[] expected = UpstreamBlockImage.ExpectedDevice;
        using (var client = new NbdTestClient(Socket))
        {
            client.Greet();
            client.SendOption(5, []);                                           // STARTTLS: refused by policy
            Assert.Equal(0x8000_0002u, client.ReceiveOptionReply().Type);
            client.SendOption(1, "fixture"u8.ToArray());                        // EXPORT_NAME: size, flags, no zeroes
            byte[] reply = client.Receive(10);
            Assert.Equal((ulong)expected.Length, System.Buffers.Binary.BinaryPrimitives.ReadUInt64BigEndian(reply));
            ushort flags = System.Buffers.Binary.BinaryPrimitives.ReadUInt16BigEndian(reply.AsSpan(8));
            Assert.Equal(0x103, flags & 0x103);                                 // has flags, read-only, multi-conn
            client.SendRequest(0, 1, 4096, 100);
            Assert.Equal((0u, 1ul), client.ReceiveSimpleReply());
            Assert.Equal(expected.AsSpan(4096, 100).ToArray(), client.Receive(100));
        }

        using (var unknown = new NbdTestClient(Socket))
        {
            unknown.Greet();
            unknown.SendOption(1, "nope"u8.ToArray());                          // EXPORT_NAME has no error reply: hang up
            Assert.True(unknown.IsClosedByServer());
        }

        using (var aborting = new NbdTestClient(Socket))
        {
            aborting.Greet();
            aborting.SendOption(2, []);                                         // ABORT: acknowledged, then closed
            Assert.Equal(1u, aborting.ReceiveOptionReply().Type);
            Assert.True(aborting.IsClosedByServer());
        }
    }

    [Fact]
    public void A_socket_path_that_is_a_file_or_a_live_socket_is_refused_and_left_alone()
    {
        string file = _dir.Combine("precious");
        File.WriteAllText(file, "keep me");
        using var other = new NbdServer(new NbdExportTable());
        Assert.Contains("is not a socket", Assert.Throws<IOException>(() => other.ListenUnix(file)).Message);
        Assert.Equal("keep me", File.ReadAllText(file));
        Assert.Contains("in use", Assert.Throws<IOException>(() => other.ListenUnix(Socket)).Message);
        TreeBuilder.Run("nbdinfo", "--size", UnixUri("fixture"));
    }

    private static void WaitFor(Func<bool> condition, string what)
    {
        var watch = Stopwatch.StartNew();
        while (!condition())
        {
            if (watch.Elapsed > TimeSpan.FromSeconds(20)) throw new TimeoutException($"waited 20 s for {what}");
            Thread.Sleep(20);
        }
    }

    public void Dispose()
    {
        _server.Dispose();
        _exports.Dispose();
        _dir.Dispose();
    }
}
